//! Flattens SDK metric data (in-memory exports) into simple points for assertions and summaries.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::AggregatedMetrics;
use opentelemetry_sdk::metrics::data::MetricData;
use opentelemetry_sdk::metrics::data::ResourceMetrics;

/// One data point of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct PointSnapshot {
    /// Metric name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// `sum`, `gauge`, `histogram` or `exponential_histogram`.
    pub kind: &'static str,
    /// Attributes rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// Sum/gauge value, or histogram sum.
    pub value: f64,
    /// Histogram count (1 for sums and gauges).
    pub count: u64,
    /// Explicit histogram bucket boundaries.
    pub bounds: Vec<f64>,
}

fn attrs<'a>(iter: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    iter.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn push_data<T: Copy + Into<f64>>(
    out: &mut Vec<PointSnapshot>,
    name: &str,
    unit: &str,
    data: &MetricData<T>,
) {
    let point = |kind, attributes, value, count, bounds| PointSnapshot {
        name: name.to_string(),
        unit: unit.to_string(),
        kind,
        attributes,
        value,
        count,
        bounds,
    };
    match data {
        MetricData::Gauge(gauge) => {
            for dp in gauge.data_points() {
                out.push(point(
                    "gauge",
                    attrs(dp.attributes()),
                    dp.value().into(),
                    1,
                    Vec::new(),
                ));
            }
        }
        MetricData::Sum(sum) => {
            for dp in sum.data_points() {
                out.push(point(
                    "sum",
                    attrs(dp.attributes()),
                    dp.value().into(),
                    1,
                    Vec::new(),
                ));
            }
        }
        MetricData::Histogram(histogram) => {
            for dp in histogram.data_points() {
                out.push(point(
                    "histogram",
                    attrs(dp.attributes()),
                    dp.sum().into(),
                    dp.count(),
                    dp.bounds().collect(),
                ));
            }
        }
        MetricData::ExponentialHistogram(histogram) => {
            for dp in histogram.data_points() {
                out.push(point(
                    "exponential_histogram",
                    attrs(dp.attributes()),
                    dp.sum().into(),
                    dp.count() as u64,
                    Vec::new(),
                ));
            }
        }
    }
}

/// Every data point in `metrics`.
pub fn flatten_metrics(metrics: &[ResourceMetrics]) -> Vec<PointSnapshot> {
    let mut out = Vec::new();
    for rm in metrics {
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                match metric.data() {
                    AggregatedMetrics::F64(data) => {
                        push_data(&mut out, metric.name(), metric.unit(), data)
                    }
                    AggregatedMetrics::U64(data) => {
                        let converted = U64AsF64(data);
                        converted.push(&mut out, metric.name(), metric.unit());
                    }
                    AggregatedMetrics::I64(data) => {
                        let converted = I64AsF64(data);
                        converted.push(&mut out, metric.name(), metric.unit());
                    }
                }
            }
        }
    }
    out
}

struct U64AsF64<'a>(&'a MetricData<u64>);
struct I64AsF64<'a>(&'a MetricData<i64>);

macro_rules! lossy_push {
    ($ty:ident) => {
        impl $ty<'_> {
            fn push(&self, out: &mut Vec<PointSnapshot>, name: &str, unit: &str) {
                let point = |kind, attributes, value: f64, count, bounds| PointSnapshot {
                    name: name.to_string(),
                    unit: unit.to_string(),
                    kind,
                    attributes,
                    value,
                    count,
                    bounds,
                };
                match self.0 {
                    MetricData::Gauge(gauge) => {
                        for dp in gauge.data_points() {
                            out.push(point(
                                "gauge",
                                attrs(dp.attributes()),
                                dp.value() as f64,
                                1,
                                Vec::new(),
                            ));
                        }
                    }
                    MetricData::Sum(sum) => {
                        for dp in sum.data_points() {
                            out.push(point(
                                "sum",
                                attrs(dp.attributes()),
                                dp.value() as f64,
                                1,
                                Vec::new(),
                            ));
                        }
                    }
                    MetricData::Histogram(histogram) => {
                        for dp in histogram.data_points() {
                            out.push(point(
                                "histogram",
                                attrs(dp.attributes()),
                                dp.sum() as f64,
                                dp.count(),
                                dp.bounds().collect(),
                            ));
                        }
                    }
                    MetricData::ExponentialHistogram(histogram) => {
                        for dp in histogram.data_points() {
                            out.push(point(
                                "exponential_histogram",
                                attrs(dp.attributes()),
                                dp.sum() as f64,
                                dp.count() as u64,
                                Vec::new(),
                            ));
                        }
                    }
                }
            }
        }
    };
}

lossy_push!(U64AsF64);
lossy_push!(I64AsF64);
