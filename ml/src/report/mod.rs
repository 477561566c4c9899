//! The evaluation report, `docs/forecast.md`: the plugin replayed over the
//! held-out subjects with the trained model and the two baselines.
