"""Evaluation: metrics (regression, classification, calibration; three-plane FID/MMD on pluggable feature
networks, MS-SSIM diversity; PIT, CRPS, spread-skill and interval coverage at its real level for sampled
values) and the MetaVoxel paper's zero-shot protocol over a trained model."""

from metavoxel.evaluation.features import (AXIS_PLANE, EncoderFeatures, FeatureNetwork, ResNetSliceFeatures,
                                           TorchScriptSliceFeatures, feature_network, foreground_slices,
                                           inception_features, vae_features)
from metavoxel.evaluation.image_metrics import (fid_mmd_3plane, frechet_distance, gaussian_mmd, ms_ssim_config,
                                                ms_ssim_diversity)
from metavoxel.evaluation.protocol import (EvaluationOptions, Readers, conditional_fidelity, evaluate_generation,
                                           evaluate_model)
from metavoxel.evaluation.readers import readers_from_baselines
from metavoxel.evaluation.scalar_metrics import (calibration_curve, classification_metrics, regression_metrics,
                                                 sample_frequencies)
from metavoxel.evaluation.uncertainty import (crps_ensemble, gaussian_crps, interval_coverage, rank_histogram,
                                              spread_skill, uncertainty_metrics)
from metavoxel.evaluation.zero_shot import (CONDITIONING_SETS, Roles, conditioning_table, likelihood_classification,
                                            sample_variable)

__all__ = [
    "AXIS_PLANE", "calibration_curve", "classification_metrics", "conditional_fidelity", "CONDITIONING_SETS",
    "conditioning_table", "crps_ensemble", "EncoderFeatures", "evaluate_generation", "evaluate_model",
    "EvaluationOptions", "feature_network", "FeatureNetwork", "fid_mmd_3plane", "foreground_slices",
    "frechet_distance", "gaussian_crps", "gaussian_mmd", "inception_features", "interval_coverage",
    "likelihood_classification", "ms_ssim_config", "ms_ssim_diversity", "rank_histogram", "Readers",
    "readers_from_baselines", "regression_metrics", "ResNetSliceFeatures", "Roles", "sample_frequencies",
    "sample_variable", "spread_skill", "TorchScriptSliceFeatures", "uncertainty_metrics", "vae_features",
]
