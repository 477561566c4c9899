//! `edgewise-ml`: train the forecasting model, write the evaluation report.

fn main() -> anyhow::Result<()> {
    Ok(())
}
