//! Everything a `memorize` run reads and checks before its first batch: the data and the
//! control set against every model, the sweep and this run's share of it, the fingerprint,
//! the control set's numbers and the header the result will carry. Apart from the command
//! because none of it runs once the sweep has begun.

use anyhow::Result;

use super::models::Models;
use super::output::{ControlSet, Header};
use super::MemorizeRun;
use crate::bad_input;
use crate::data::rows::RowRange;
use crate::data::{SampleOrigin, Samples};
use crate::memorize::{self, Discoverable, MemorizeOptions, TokenRows};
use crate::results::{DataInfo, ModelInfo};
use crate::sweep::{fingerprint, shard, Fingerprint, Unit};

/// Everything checked and read before the first batch.
pub(super) struct Job {
    pub(super) data: TokenRows,
    origins: Option<Vec<SampleOrigin>>,
    /// This run's units (all of the sweep's unless sharded), in sweep order.
    pub(super) mine: Vec<Unit>,
    pub(super) fingerprint: Fingerprint,
    /// What the report says about the model.
    model: ModelInfo,
    /// The control rows, checked against the model.
    control: Option<TokenRows>,
}

/// The control set scored under every setting of the sweep, before the sweep itself (a
/// teacher-forced pass per setting, no decoding); `None` without `--control-path`.
pub(super) fn control_set(
    run: &MemorizeRun,
    models: &Models,
    job: &Job,
) -> Result<Option<ControlSet>> {
    let (Some(source), Some(rows), Models::One { model, .. }) =
        (&run.control, &job.control, models)
    else {
        return Ok(None);
    };
    let settings = &job.fingerprint.settings;
    let batch_size = run.options.batch_size;
    let means = memorize::engine::means_over_rows(model, &job.data, batch_size, settings)?;
    let prefix_len = run.options.prefix_len;
    let scores = memorize::control::score(
        model,
        rows,
        prefix_len,
        batch_size,
        settings,
        means.as_ref(),
    )?;
    Ok(Some(ControlSet {
        path: source.name(),
        num_samples: rows.rows,
        seq_len: rows.cols,
        scores: settings.iter().map(|s| s.label()).zip(scores).collect(),
    }))
}

pub(super) fn header(run: &MemorizeRun, job: &Job, control: Option<ControlSet>) -> Header {
    let prefix_len = run.options.prefix_len;
    Header {
        model: job.model.clone(),
        data: DataInfo {
            path: run.data.name(),
            rows: run.rows,
            num_samples: job.data.rows,
            seq_len: job.data.cols,
            prefix_len,
            suffix_len: job.data.cols - prefix_len,
        },
        per_sample: run.per_sample,
        origins: job.origins.clone(),
        control,
    }
}

/// Read and check the data, build the sweep and this run's share of it, and fingerprint it
/// all.
pub(super) fn prepare(run: &MemorizeRun, models: &Models) -> Result<Job> {
    let prefix_len = run.options.prefix_len;
    let data_name = run.data_name();
    let mut samples = run.data.read(run.per_sample)?;
    if let Some(rows) = run.rows {
        samples = rows.select(samples, &run.data.name())?;
    }
    let Samples {
        rows: data,
        origins,
        inputs,
    } = samples;
    for (which, config) in models.configs() {
        memorize::validate_config(config, &data, prefix_len, &format!("{data_name}{which}"))?;
    }
    let control = read_control(run, models)?;
    let control_inputs = control.iter().flat_map(|c| c.inputs.clone());
    let config = models.config();
    let layers = config.num_layers();
    let sweep = run.settings.settings(config.sites())?;
    let (device, dtype) = (&run.model.device, run.model.dtype);
    let base = match models {
        Models::One { files, .. } => Fingerprint::for_model("memorize", files, dtype, device)?,
        Models::Revisions(revisions) => {
            let ids = revisions.ids();
            Fingerprint {
                revisions: Some(ids.clone()),
                ..Fingerprint::for_model_id("memorize", ids[0].model.clone(), dtype, device)
            }
        }
    };
    let fingerprint = Fingerprint {
        inputs: inputs
            .into_iter()
            .chain(control_inputs)
            .map(|(name, file)| Ok((name, fingerprint::file_id(&file)?)))
            .collect::<Result<_>>()?,
        params: params(&run.options, run.rows),
        settings: sweep.clone(),
        ..base
    };
    let units = crate::sweep::revisions::units(&fingerprint);
    let costs = memorize::setting_costs(&sweep, layers, data.cols, data.cols - prefix_len);
    // The same settings cost the same at every revision.
    let unit_costs: Vec<f64> = (0..units.len()).map(|u| costs[u % costs.len()]).collect();
    let mine = match run.shard {
        // Over revisions a shard holds consecutive units: few revisions to load.
        Some(k) => shard::units_of(k, &unit_costs, fingerprint.revisions.is_some())?,
        None => (0..units.len()).collect(),
    }
    .into_iter()
    .map(|u| units[u].clone())
    .collect();
    let model = crate::cli::long_run::model_info(&run.model, config);
    Ok(Job {
        data,
        origins,
        mine,
        fingerprint,
        model,
        control: control.map(|c| c.rows),
    })
}

/// The control rows of `--control-path`, checked against the model, with the files they came
/// from named for the fingerprint (`control/…`).
fn read_control(run: &MemorizeRun, models: &Models) -> Result<Option<Samples>> {
    let Some(source) = &run.control else {
        return Ok(None);
    };
    if let Models::Revisions(_) = models {
        return Err(bad_input!(
            "--control-path: not supported in a sweep over revisions; run each revision alone"
        ));
    }
    let samples = source.read(false)?;
    let name = format!("--control-path {}", source.name());
    memorize::control::validate(
        models.config(),
        &samples.rows,
        run.options.prefix_len,
        &name,
    )?;
    let inputs = samples
        .inputs
        .into_iter()
        .map(|(n, file)| (format!("control/{n}"), file))
        .collect();
    Ok(Some(Samples { inputs, ..samples }))
}

/// The options that change the numbers: the rows scored and the measurements. Each optional
/// one only when asked for, so that a run without it keeps the fingerprint it always had.
fn params(
    options: &MemorizeOptions,
    rows: Option<RowRange>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut params: std::collections::BTreeMap<String, serde_json::Value> =
        [("prefix_len".to_string(), options.prefix_len.into())].into();
    if let Some(rows) = rows {
        params.insert("rows".into(), rows.to_string().into());
    }
    if options.kl_from_base {
        params.insert("kl_from_base".into(), true.into());
    }
    if let Some(sampling) = &options.sampling {
        let label = memorize::extraction::sampling_label(sampling);
        params.insert("sampling".into(), label.into());
        let Discoverable { n, p } = options.discoverable;
        params.insert("discoverable".into(), format!("{n},{p}").into());
    }
    if options.logit_lens {
        params.insert("logit_lens".into(), true.into());
    }
    params
}
