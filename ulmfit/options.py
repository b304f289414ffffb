"""The allowed values of the options that take one of a few words, defined once: the modules that act on them
(``training``, ``hardware``, ``precision``, ``models``, ``data.tokens``, the stages) and ``schema``, which
checks a composed config before any work, read them from here. Nothing heavy is imported, so ``schema`` stays light.
"""

from __future__ import annotations

AUTO = "auto"  # decided per run: by the device (hardware), or by the corpus's size (train.epochs)

DIRECTIONS = ("forward", "backward", "both")                  # direction (ulmfit.directions)

SCHEDULES = ("stlr", "one_cycle", "constant")                 # train.schedule (ulmfit.training.fit)
OPTIMIZERS = ("adam",)                                        # train.optimizer.name
PRECISIONS = (AUTO, "fp32", "bf16", "fp16")                   # train.precision (ulmfit.hardware)
RESOLVED_PRECISIONS = PRECISIONS[1:]                          # what ``auto`` becomes on a given device
LM_LOSSES = (AUTO, "blockwise", "fastai")                     # train.lm_loss (ulmfit.losses, ulmfit.hardware)
LM_MONITORS = ("valid_loss", "accuracy", "perplexity")        # train.monitor of an LM: its Recorder's metrics
CLAS_MONITORS = ("valid_loss", "accuracy")                    # train.monitor of a classifier
CLASSIFY_PARENT_STAGES = ("lm_finetune", "pretrain", "none")  # stage.parent_stage of classify
PROBE_PARENT_STAGES = ("lm_finetune", "pretrain")             # of probe: it needs an encoder
POOL_LAYERS = ("last", "all")                                 # model.head.pool_layers (ulmfit.models)
PARENT_VOCAB = ("none", "seen", "all")                        # stage.parent_vocab of lm_finetune (ulmfit.data.tokens)
TOKENIZERS = ("spacy", "sentencepiece")                       # data.tokenizer (ulmfit.data.subword)
LOGGER_MODES = ("offline", "online", "disabled")              # logger.mode (ulmfit.tracking)
