"""Text classification with a pretrained encoder or LLM: your data, five fine-tuning methods, one loop.

Shared by notebook 03 (LoRA rank ablation) and notebook 06 (head only vs last N layers vs all layers vs
LoRA vs QLoRA; its learning curve is :mod:`utils.experiments.learning_curve`). The steps, each a function:

1. :func:`load_labelled` reads a CSV/JSONL file (or a Hub dataset, or a :data:`COURSE_DATA` name) with a text
   and a label column, checks it, maps labels to ids and splits it (stratified) into ``train``/``test``;
   :func:`hold_out_validation` splits a ``validation`` set off ``train`` to choose settings on.
2. :func:`load_classifier` loads ``AutoModelForSequenceClassification`` with a new head and makes
   only the part that a method trains trainable (:data:`METHODS`).
3. :func:`train_and_evaluate` trains with ``transformers.Trainer`` (keeping the best epoch on ``validation``
   when there is one), scores the test split, saves what was trained and returns a :class:`RunResult`.
4. :func:`load_saved` + :func:`classify` predict labels and probabilities for new text.

One module per step: :mod:`.data` (1), :mod:`.model` (2 and the saved form), :mod:`.train` (3 and prediction),
:mod:`.baselines` (the majority class and TF-IDF, which every comparison includes). Import the package: every
name below is the public API (``from utils import classification as clf``).

The new classification head (``classifier`` in BERT-like models, ``score`` in decoder LLMs such as
Phi-2) is always trained in fp32 and never quantized: it starts from random numbers, so there are no
pretrained weights whose distribution NF4 was designed for, and it is small, so quantizing it saves
nothing while costing precision on the one layer that learns the most.
"""

from utils.classification.baselines import (
                                            TFIDF_C_GRID,
                                            compare_over_seeds,
                                            majority_baseline,
                                            tfidf_baseline,
                                            tfidf_predict,
                                            verdict_against,
)
from utils.classification.data import (
                                            COURSE_DATA,
                                            SMOKE_DATA,
                                            class_balance,
                                            course_data_path,
                                            encode_labels,
                                            hold_out_validation,
                                            label_names,
                                            load_labelled,
                                            nested_subsets,
                                            subsample,
)
from utils.classification.model import (
                                            METHODS,
                                            SPEC_FILE,
                                            head_name,
                                            load_classifier,
                                            load_saved,
                                            save_trained,
                                            tokenize,
                                            transformer_blocks,
)
from utils.classification.train import (
                                            RunResult,
                                            classify,
                                            new_run_folder,
                                            predict_logits,
                                            score,
                                            scores,
                                            train_and_evaluate,
)
from utils.models.adapters import count_parameters

__all__ = ["COURSE_DATA", "METHODS", "SMOKE_DATA", "SPEC_FILE", "TFIDF_C_GRID", "RunResult", "class_balance",
           "classify", "compare_over_seeds", "count_parameters", "course_data_path", "encode_labels", "head_name",
           "hold_out_validation", "label_names", "load_classifier", "load_labelled", "load_saved", "majority_baseline",
           "nested_subsets", "new_run_folder", "predict_logits", "save_trained", "score", "scores", "subsample",
           "tfidf_baseline", "tfidf_predict", "tokenize", "train_and_evaluate", "transformer_blocks", "verdict_against"]
