"""``python -m ulmfit stage=<name> [overrides]``: compose the Hydra config, run one stage.

Examples::

    python -m ulmfit stage=pretrain                      # embedded WikiText-2 sample, CPU-sized model
    python -m ulmfit stage=pretrain data=wikitext2 data.root=../shared/data/wikitext-2 experiment=wikitext2_cpu
    python -m ulmfit stage=pretrain --cfg job            # print the composed config
    python -m ulmfit -m stage=pretrain train.lr=1e-3,3e-3  # a sweep: one store entry per job
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from ulmfit.config import CONF_DIR
from ulmfit.errors import UsageError

log = logging.getLogger("ulmfit")
_started = False  # set once Hydra has composed the config and handed it to the task


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _run(cfg: DictConfig) -> float | None:
    global _started
    _started = True
    from ulmfit.stages import get_stage, objective_value
    from ulmfit.schema import validate
    from ulmfit.tracking import tracking
    try:
        try:
            validate(cfg)  # types and ranges of every option, before any data is read
            with tracking(cfg):
                result = get_stage(cfg.stage.name)(cfg)
            return objective_value(result, cfg.get("objective"))
        except MissingMandatoryValue as e:  # a `???` in the config the user did not fill in
            raise UsageError(f"Missing config value {e.full_key}: set it on the command line, "
                             f"e.g. {e.full_key}=<value>.") from None
    except UsageError as e:
        _fail(e)


def _fail(e: UsageError) -> NoReturn:
    """One clear line, exit code 2; the store was not touched (entries are written atomically)."""
    print(f"ulmfit: error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)


def main() -> None:
    if any(a in ("--help", "-h") for a in sys.argv[1:]):  # ours: stages, recipes, groups (Hydra's: --hydra-help)
        from ulmfit.cli_help import render
        print(render())
        return
    from ulmfit.schema import check_renamed
    try:
        check_renamed(sys.argv[1:])  # an old option's spelling: name the new one, before Hydra words it as a typo
    except UsageError as e:
        _fail(e)
    from ulmfit.allocator import reexec_with_replacement
    restart = reexec_with_replacement(sys.argv[1:])
    if restart is not None:  # the same command under tcmalloc/jemalloc, chosen before anything is allocated
        command, env = restart
        os.execve(command[0], command, env)
    try:
        _run()
    except SystemExit as e:
        # Hydra reports a bad override or config (a typo, an unknown option) itself and exits 1 before the task
        # starts; that is a usage error, so exit 2 like every other one. Failures inside a run keep their code.
        if e.code == 1 and not _started:
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
