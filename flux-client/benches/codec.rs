//! Message codec throughput: encoding a request, decoding a job-list response.
//!
//! `cargo bench -p flux-client --bench codec`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flux_client::codec::{decode_message, encode_message};
use flux_client::message::{Message, MsgType, NODEID_ANY};

fn codec(c: &mut Criterion) {
    let request = Message::request("attr.get", NODEID_ANY, 1)
        .with_json(&serde_json::json!({"name": "size"}))
        .unwrap();
    let mut response = Message::request("job-list.list", NODEID_ANY, 1);
    response.kind = MsgType::Response;
    response.aux1 = 0;
    let job = serde_json::json!({"id": 130157641728u64, "name": "sleep", "userid": 0, "urgency": 16,
        "priority": 16, "t_submit": 1795353069.88169, "state": 8, "cwd": "/tmp", "ntasks": 2});
    let jobs: Vec<_> = (0..100).map(|_| job.clone()).collect();
    response = response
        .with_json(&serde_json::json!({ "jobs": jobs }))
        .unwrap();
    let response_bytes = encode_message(&response);

    let mut g = c.benchmark_group("codec");
    g.bench_function("encode attr.get request", |b| {
        b.iter(|| encode_message(&request))
    });
    g.throughput(Throughput::Bytes(response_bytes.len() as u64));
    g.bench_function("decode 100-job response", |b| {
        b.iter(|| decode_message(&response_bytes).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
