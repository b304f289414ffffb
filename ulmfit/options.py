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
TASKS = ("classification", "multilabel", "regression")        # data.task (ulmfit.tasks)
TASK_MONITORS = {"classification": CLAS_MONITORS,             # train.monitor of a classifier per task: the loss,
                 "multilabel": ("valid_loss", "f1_score"),    # or the task's fastai metric (micro-F1 at 0.5;
                 "regression": ("valid_loss", "spearmanr")}   # Spearman; a regression's loss is the MSE)
CLASSIFY_PARENT_STAGES = ("lm_finetune", "pretrain", "none")  # stage.parent_stage of classify
PROBE_PARENT_STAGES = ("lm_finetune", "pretrain")             # of probe: it needs an encoder
POOL_LAYERS = ("last", "all")                                 # model.head.pool_layers (ulmfit.models)
PARENT_VOCAB = ("none", "seen", "all")                        # stage.parent_vocab of lm_finetune (ulmfit.data.tokens)
TOKENIZERS = ("spacy", "sentencepiece")                       # data.tokenizer (ulmfit.data.subword)
LOGGER_MODES = ("offline", "online", "disabled")              # logger.mode (ulmfit.tracking)
