"""Where the Hydra configs live, and the resolvers they use."""

from __future__ import annotations


from omegaconf import DictConfig, OmegaConf

from ulmfit import PACKAGE_DIR, SAMPLE_DIR

# In a wheel the configs ship as ulmfit/conf; in a source checkout they are the top-level conf/.
CONF_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if (p / "config.yaml").is_file())


def register_resolvers() -> None:
    """``${sample:wikitext-2}`` -> the embedded sample folder, wherever the package is installed."""
    if not OmegaConf.has_resolver("sample"):
        OmegaConf.register_new_resolver("sample", lambda name="": str(SAMPLE_DIR / name))


register_resolvers()


def compose(*overrides: str) -> DictConfig:
    """The config ``python -m ulmfit <overrides>`` would run with, for the Python API and notebooks."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from ulmfit.schema import check_renamed
    check_renamed(overrides)  # the Python API and a pipeline's steps: an old spelling names the new one
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app (e.g. the pipeline stage): reuse it
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
