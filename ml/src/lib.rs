//! The cloud side of glucose forecasting (issue #16): train the model of the
//! `glucose-forecast` plugin on iglu recordings ([`train`]), and judge it by
//! replaying the plugin against held-out subjects ([`report`], which writes
//! `docs/forecast.md`). The model itself (features, file, inference) is the
//! `forecast-model` crate, which the plugin runs too.

#![deny(missing_docs)]

pub mod data;
pub mod report;
pub mod train;
