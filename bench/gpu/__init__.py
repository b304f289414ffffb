"""The GPU section of ``python -m bench``: ours vs stock fastai on one GPU -> ``bench/gpu.md`` and ``gpu.json``.

    python -m bench --gpu --tokens .gpu/corpora    # on a CUDA machine, about 5 minutes (--budget-minutes)
    python -m bench --gpu --tokens DIR --profile   # also torch.profiler tables of a few steps of each side
    python -m bench --gpu --smoke --out DIR        # the same code at tiny sizes, on the CPU where there is no GPU

It reads portable token files only (``ulmfit.data.portable``): ``wikitext2.tokens`` and ``imdb.tokens`` in the
``--tokens`` folder, which ``python -m experiments.gpu_payload --out .gpu`` writes to ``.gpu/corpora`` on a CPU
machine. Nothing is tokenized here: the GPU machine has no spaCy, and every measuring child process runs with
``import spacy`` made to fail, on the CPU too, so a run that would tokenize fails instead of measuring another path.
``--smoke`` without token files exports tiny ones from the embedded samples first (the one step that tokenizes, in
its own process) and then runs the same code.

Every LM run is a fresh process on the same WikiText-2 documents and vocabulary, paper-size AWD-LSTM
(``model=awd_lstm``, its dropouts times the same drop_mult), bptt 70, one epoch of one-cycle at the same LR, seed 0.
The documents are the seeded subset of whole training documents that ``stage.lm_tokens`` (``--lm-tokens``) picks,
the vocabulary pretrain's, built from the whole train part; validation on the whole valid part:

* stock: ``language_model_learner(dls, AWD_LSTM, config=..., pretrained=False)`` with ``.to_fp16()`` /
  ``.to_bf16()`` on fastai's ``LMDataLoader``, over tensors built by pretrain's own data calls
  (``bench.lm_speed.stock`` / ``lm_docs``);
* ours: ``python -m ulmfit stage=pretrain model=awd_lstm train.precision=... train.bs=...``, as a user runs it
  (``VARIANTS["ours"]``), and with device switches set back to their CPU values (``VARIANTS``, ``ATTRIBUTION``)
  so that the report shows which switch bought what.

Tokens/s = training tokens / wall seconds of the fit (training and its one validation pass; for ours the stage's
own ``train_seconds``, which includes the end-of-epoch checkpoint: its share is reported beside it). Peak GPU
memory is ``torch.cuda.max_memory_allocated`` during the fit, read by the process itself (a fastai callback that
this module adds to ``fastai.learner.defaults.callbacks`` in the child; ``ulmfit`` itself is run unchanged).
Then a classifier epoch (``stage=classify`` at paper size on ``data.n_train`` IMDB reviews) and prediction
throughput from token ids (``bench.predict.from_tokens``: ``stage=predict`` tokenizes raw text, which needs spaCy).

Runs that are not needed for the target (everything but stock and ours at each batch size and precision) are
started only while the running estimate says they fit in ``--budget-minutes``; stock and ours unless they would end
more than ``GRACE_SECONDS`` past it. Results are rewritten after every run, so an interrupted run (the GPU session
gives the section ``timeout 360``) leaves what it measured.

The section is four modules: ``planning`` (what runs, sizes, order, the time budget), ``running`` (``section``: the
runs in child processes, results read back), ``child`` (one run with its measurement hooks: ``python -m bench.gpu``)
and ``reporting`` (each run against stock, gpu.md and gpu.json).
"""

from bench.gpu.planning import (ATTRIBUTION, ATTRIBUTION_AT, BATCH_SIZES, BUDGET_MINUTES, GRACE_SECONDS, LM_TOKENS,
                                PRECISIONS, PROFILE_AT, TOKEN_FILES, VARIANTS, Budget, Job, Sizes, missing_options, plan)
from bench.gpu.reporting import compare, report, write
from bench.gpu.running import section, token_files

__all__ = ["ATTRIBUTION", "ATTRIBUTION_AT", "BATCH_SIZES", "BUDGET_MINUTES", "GRACE_SECONDS", "LM_TOKENS", "PRECISIONS",
           "PROFILE_AT", "TOKEN_FILES", "VARIANTS", "Budget", "Job", "Sizes", "compare", "missing_options", "plan",
           "report", "section", "token_files", "write"]
