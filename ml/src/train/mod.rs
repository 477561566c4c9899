//! Training: ridge regression on the features of `forecast-model`, the
//! penalty chosen by leave-subjects-out cross-validation.
