import sys, glob, gzip, json, collections, os, shutil
import brainstate, jax, jax.numpy as jnp
from benchmarks.models import ModelSpec, build_model, make_data
from benchmarks.methods import build_body
kind, N, method, T = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spec = ModelSpec(kind, N, T=T)
model = build_model(spec)
body = build_body(method, model, spec)
xs, ys = make_data(spec)
f = brainstate.transform.jit(body)
jax.block_until_ready(f(xs, ys))
d = "/tmp/trace"; shutil.rmtree(d, ignore_errors=True)
jax.profiler.start_trace(d)
jax.block_until_ready(f(xs, ys))
jax.profiler.stop_trace()
files = glob.glob(d + "/**/*.trace.json.gz", recursive=True)
ev = json.load(gzip.open(files[0]))["traceEvents"]
agg = collections.Counter(); cnt = collections.Counter()
for e in ev:
    if e.get("ph") == "X" and "dur" in e:
        agg[e["name"]] += e["dur"]; cnt[e["name"]] += 1
for k, v in agg.most_common(25): print(f"{v/1000:9.1f} ms {cnt[k]:6d}  {k[:100]}")
