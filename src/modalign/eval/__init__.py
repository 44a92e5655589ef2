"""Honest evaluation: clustering and supervised metrics, robustness measures, baselines,
result records, tables and plots.

Typical use::

    from modalign.data import load_dataset, Preprocessor
    from modalign.eval import evaluate_baselines, write_results, merge_records, read_results

    ds = Preprocessor("auto").fit_transform(load_dataset("prokaryotic"))
    records = evaluate_baselines(ds, seeds=range(5), dataset="prokaryotic")
    write_results("runs/prokaryotic", merge_records(read_results("runs/prokaryotic"), records))

See ``docs/evaluation.md`` for the metrics, the baselines and the rules (DESIGN.md section 3).
"""

from modalign.eval.baselines import (
    ALIGNED_ONLY,
    BASELINES,
    Prediction,
    ViewSelection,
    evaluate_baselines,
    graph_best_view,
    graph_concat,
    graph_each_view,
    graph_fused,
    head_clusters,
    kmeans_best_view,
    kmeans_concat,
    kmeans_each_view,
    majority,
    run_baseline,
    scale_view,
    score_prediction,
    spectral_concat,
)
from modalign.eval.diagnostics import coupling_quality
from modalign.eval.metrics import (
    METRICS,
    ari,
    balanced_accuracy_cap,
    clustering_scores,
    contingency_matrix,
    hungarian_accuracy,
    nmi,
    purity,
)
from modalign.eval.report import (
    METRIC_LABELS,
    RECORD_KEYS,
    atomic_write,
    embed_2d,
    markdown_table,
    mean_std_text,
    merge_records,
    plot_embedding,
    read_header,
    read_results,
    records_from_scores,
    summarise,
    write_results,
)
from modalign.eval.robustness import (
    effective_robustness,
    plot_robustness_curves,
    relative_robustness,
)
from modalign.eval.supervised import (
    SUPERVISED_METRICS,
    accuracy,
    classification_scores,
    macro_f1,
    mean_absolute_error,
    pearson,
    regression_scores,
)

__all__ = [
    "SUPERVISED_METRICS",
    "accuracy",
    "classification_scores",
    "coupling_quality",
    "effective_robustness",
    "macro_f1",
    "mean_absolute_error",
    "pearson",
    "plot_robustness_curves",
    "regression_scores",
    "relative_robustness",
    "ALIGNED_ONLY",
    "BASELINES",
    "METRICS",
    "METRIC_LABELS",
    "RECORD_KEYS",
    "Prediction",
    "ViewSelection",
    "ari",
    "balanced_accuracy_cap",
    "atomic_write",
    "clustering_scores",
    "contingency_matrix",
    "embed_2d",
    "evaluate_baselines",
    "graph_best_view",
    "graph_concat",
    "graph_each_view",
    "graph_fused",
    "head_clusters",
    "hungarian_accuracy",
    "kmeans_best_view",
    "kmeans_concat",
    "kmeans_each_view",
    "majority",
    "markdown_table",
    "mean_std_text",
    "merge_records",
    "nmi",
    "plot_embedding",
    "purity",
    "read_header",
    "read_results",
    "records_from_scores",
    "run_baseline",
    "scale_view",
    "score_prediction",
    "spectral_concat",
    "summarise",
    "write_results",
]
