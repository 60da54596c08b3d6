"""PyTorch peer of the benchmark (bench/run.ts starts it; see bench/lib/python.ts for the environment).

    /usr/bin/python3 bench/peers/pytorch.py '<job json>'

Reads the shared inputs the parent wrote (bench/lib/common.ts writeInputs: raw little-endian arrays
and manifest.json with the sizes and hyperparameters), runs one job as a PyTorch user writes it, and
prints one line `BENCH_REPORT {json}` in the shape of bench/lib/common.ts's WorkerReport. The step
clock, the matmul timing and the weights hash follow common.ts's StepClock, bestOf and hashArrays.
"""

import json
import os
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Inputs, clock, report


def read_inputs(folder, with_data):
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)

    def f32(name):
        return np.fromfile(os.path.join(folder, name + ".f32"), dtype="<f4")

    data = None
    if with_data and manifest["rows"] > 0:
        data = {
            "x": np.fromfile(os.path.join(folder, "x.f32"), dtype="<f4").reshape(manifest["rows"], -1),
            "y": np.fromfile(os.path.join(folder, "y.i32"), dtype="<i4"),
            "rows": manifest["rows"],
            "source": manifest["source"],
        }
    return {
        "constants": manifest["constants"],
        "data": data,
        "weights": [f32(n) for n in ("w1", "b1", "w2", "b2")],
        "lif_weights": [f32("lif_" + n) for n in ("w1", "b1", "w2", "b2")],
        "lif_spikes0": np.fromfile(os.path.join(folder, "lif_spikes0.u8"), dtype=np.uint8),
        "matmul": (f32("a"), f32("b")),
        "conv_weights": {n: f32("conv_" + n) for n in ("k1", "b1", "k2", "b2", "w", "b")},
    }


def hash_arrays(arrays):
    """CRC-32 over the arrays' bytes, as bench/lib/common.ts hashArrays computes it."""
    h = 0
    for a in arrays:
        h = zlib.crc32(np.ascontiguousarray(a).tobytes(), h)
    return format(h, "08x")


def steps_per_epoch(case, c):
    return 60000 // (c["lif"]["batch"] if case == "lifNet" else c["batch"])


class StepClock:
    """common.ts StepClock: warm-up steps, then at most max_steps measured steps or budget_s seconds."""

    def __init__(self, job):
        self.job = job
        self.losses = []
        self.t0 = self.t_warm = self.t_last = self.t_first = 0.0

    @property
    def planned_steps(self):
        return self.job["warmupSteps"] + self.job["maxSteps"]

    def start(self):
        self.t0 = self.t_warm = time.perf_counter()

    def step(self, loss):
        now = time.perf_counter()
        self.losses.append(loss)
        n = len(self.losses)
        if n == 1:
            self.t_first = now
        if n == self.job["warmupSteps"]:
            self.t_warm = now
        self.t_last = now
        measured = n - self.job["warmupSteps"]
        if measured >= self.job["maxSteps"]:
            return False
        budget = self.job["budgetS"]
        return not (measured > 0 and budget is not None and now - self.t_warm >= budget)

    def result(self, spe):
        measured = max(0, len(self.losses) - self.job["warmupSteps"])
        return {
            "kind": "train",
            "warmupSteps": min(self.job["warmupSteps"], len(self.losses)),
            "measuredSteps": measured,
            "measuredS": self.t_last - self.t_warm if measured > 0 else 0,
            "firstStepS": self.t_first - self.t0,
            "losses": self.losses,
            "stepsPerEpoch": spe,
        }


def best_of(run, reps, rep_ms):
    """common.ts bestOf: best ms per call over reps repetitions, after 3 untimed warm-up calls."""
    warm_ms = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        run()
        warm_ms = (time.perf_counter() - t) * 1000
    calls = max(1, min(1000, round(rep_ms / max(warm_ms, 1e-3))))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - t) * 1000 / calls)
    return best, calls


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Models


class SpikingRelu(torch.autograd.Function):
    """spiking/activation.ts spikingActivation('relu') as a custom autograd function.

    Forward: integrate-and-fire over the time axis (1) of relu(h): v += r dt; n = floor(v); v -= n;
    out = n / dt, from the initial voltages v0. Backward: relu'(h), straight through the spikes.
    """

    @staticmethod
    def forward(ctx, h, v0, dt):
        ctx.save_for_backward(h)
        rates = torch.relu(h)
        v = v0.clone()
        out = torch.empty_like(rates)
        for t in range(rates.shape[1]):
            v = v + rates[:, t] * dt
            n = torch.floor(v)
            v = v - n
            out[:, t] = n / dt
        return out

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        return grad * (h > 0).to(grad.dtype), None, None


class FastSigmoidSpike(torch.autograd.Function):
    """H(u) forward (H(0) = 0), the fast sigmoid 1 / (slope |u| + 1)^2 backward."""

    @staticmethod
    def forward(ctx, u, slope):
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad / (ctx.slope * u.abs() + 1) ** 2, None


def leaky(current, lif):
    """Leaky over time (axis 0): U_t = beta U_{t-1} + x_t - R_t thr, R_t = H(U_{t-1} - thr) detached, S_t = H(U_t - thr)."""
    beta, thr, slope = lif["beta"], lif["threshold"], lif["slope"]
    mem = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        reset = (mem.detach() > thr).to(mem.dtype)
        mem = beta * mem + current[t] - reset * thr
        spikes.append(FastSigmoidSpike.apply(mem - thr, slope))
    return torch.stack(spikes)


def run_steps(data, batch, clock, opt, logits_of):
    """The timed loop every training case shares: batch s of the data in order, cross-entropy on
    logits_of(s, xb), one optimizer step, until the epoch ends or the clock says stop."""
    x_all = torch.from_numpy(data["x"])
    y_all = torch.from_numpy(data["y"].astype(np.int64))
    steps = min(data["rows"] // batch, clock.planned_steps)
    clock.start()
    for s in range(steps):
        xb = x_all[s * batch : (s + 1) * batch]
        yb = y_all[s * batch : (s + 1) * batch]
        loss = F.cross_entropy(logits_of(s, xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not clock.step(loss.item()):
            break


def train_conv(inputs, clock):
    """The conv case as a PyTorch user writes it (bench/lib/common.ts CONV; tfjs.ts trainConv).

    The image repeated over the time steps as a (B * T, 1, 28, 28) batch, conv2d / relu /
    avg_pool2d twice, the mean over time, the readout. The shared kernels are Keras's (height,
    width, in, out) and the readout flattens (height, width, channels): the kernels are permuted to
    PyTorch's (out, in, height, width) once, and the last feature map is permuted to channels-last
    before it is flattened, so the network is the same function of the same weights.
    """
    c = inputs["constants"]
    data = inputs["data"]
    if data is None:
        raise RuntimeError("pytorch peer: the inputs hold no training data")
    conv = c["conv"]
    k, f1, f2, flat = conv["window"], conv["filters1"], conv["filters2"], conv["flat"]
    batch, steps_t, classes = c["batch"], c["timeSteps"], c["classes"]
    w = inputs["conv_weights"]

    def kernel(a, c_in, c_out):
        return torch.tensor(a.reshape(k, k, c_in, c_out)).permute(3, 2, 0, 1).contiguous().requires_grad_()

    K1, K2 = kernel(w["k1"], 1, f1), kernel(w["k2"], f1, f2)
    B1, B2 = torch.tensor(w["b1"], requires_grad=True), torch.tensor(w["b2"], requires_grad=True)
    W = torch.tensor(w["w"].reshape(flat, classes), requires_grad=True)
    B = torch.tensor(w["b"], requires_grad=True)
    params = [K1, B1, K2, B2, W, B]
    adam = c["adam"]
    opt = torch.optim.Adam(params, lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["epsilon"])

    def logits_of(xb):
        b = xb.shape[0]
        xt = xb.reshape(b, 1, 1, 28, 28).expand(b, steps_t, 1, 28, 28).reshape(b * steps_t, 1, 28, 28)
        h1 = F.avg_pool2d(torch.relu(F.conv2d(xt, K1, B1)), 2)
        h2 = F.avg_pool2d(torch.relu(F.conv2d(h1, K2, B2)), 2)
        per_step = h2.permute(0, 2, 3, 1).reshape(b, steps_t, flat)
        return torch.addmm(B, per_step.mean(1), W)

    run_steps(data, batch, clock, opt, lambda s, xb: logits_of(xb))


def train(case, inputs, clock, seed):
    if case == "conv":
        return train_conv(inputs, clock)
    c = inputs["constants"]
    data = inputs["data"]
    if data is None:
        raise RuntimeError("pytorch peer: the inputs hold no training data")
    lif = c["lif"]
    image, classes, steps_t, dt = c["image"], c["classes"], c["timeSteps"], c["spikingDt"]
    hidden = lif["hidden"] if case == "lifNet" else c["hidden"]
    batch = lif["batch"] if case == "lifNet" else c["batch"]
    w1, b1, w2, b2 = inputs["lif_weights"] if case == "lifNet" else inputs["weights"]
    params = [
        torch.tensor(w1.reshape(image, hidden), requires_grad=True),
        torch.tensor(b1, requires_grad=True),
        torch.tensor(w2.reshape(hidden, classes), requires_grad=True),
        torch.tensor(b2, requires_grad=True),
    ]
    W1, B1, W2, B2 = params
    adam = c["adam"]
    lr = lif["lr"] if case == "lifNet" else adam["lr"]
    opt = torch.optim.Adam(params, lr=lr, betas=(adam["beta1"], adam["beta2"]), eps=adam["epsilon"])
    gen = torch.Generator().manual_seed(seed + 1)
    spikes0 = inputs["lif_spikes0"]

    def logits_of(s, xb):
        b = xb.shape[0]
        if case == "m1":
            return torch.addmm(B2, torch.relu(torch.addmm(B1, xb, W1)), W2)
        if case == "lifNet":
            # Rate code inside the step; the first batch uses the parent's spikes (same loss to compare).
            if s == 0 and spikes0.size:
                spk_in = torch.from_numpy(spikes0.reshape(lif["timeSteps"], b, image).astype(np.float32))
            else:
                spk_in = (torch.rand((lif["timeSteps"], b, image), generator=gen) < xb).to(torch.float32)
            t_steps = spk_in.shape[0]
            cur1 = torch.addmm(B1, spk_in.reshape(t_steps * b, image), W1).reshape(t_steps, b, hidden)
            spk1 = leaky(cur1, lif)
            cur2 = torch.addmm(B2, spk1.reshape(t_steps * b, hidden), W2).reshape(t_steps, b, classes)
            return leaky(cur2, lif).sum(0)  # spike counts
        if case == "poisson":
            # Bernoulli(intensity) per pixel and step, spikes of height 1, encoded inside the step.
            xt = (torch.rand((b, steps_t, image), generator=gen) < xb.unsqueeze(1)).to(torch.float32)
        else:
            xt = xb.unsqueeze(1).expand(b, steps_t, image)
        h = torch.matmul(xt, W1) + B1  # (B, T, hidden): TimeDistributed(Dense)
        if case == "m2":
            a = torch.relu(h)
        else:
            a = SpikingRelu.apply(h, torch.rand((b, hidden), generator=gen), dt)
        return torch.addmm(B2, a.mean(1), W2)

    run_steps(data, batch, clock, opt, logits_of)


def run_job(job):
    inputs = read_inputs(job["inputsDir"], job["case"] != "matmul")
    c = inputs["constants"]
    if job["case"] == "matmul":
        a, b = inputs["matmul"]
        m, k, n = c["batch"] * c["timeSteps"], c["image"], c["hidden"]
        A = torch.from_numpy(a.reshape(m, k))
        B = torch.from_numpy(b.reshape(k, n))

        def run():
            return torch.mm(A, B).numpy()

        best_ms, calls = best_of(run, job["reps"], job["repMs"])
        gflops = 2 * m * k * n / (best_ms * 1e6)
        result = {"kind": "matmul", "bestMs": best_ms, "gflops": gflops, "reps": job["reps"], "callsPerRep": calls, "checksum": float(np.sum(run(), dtype=np.float64))}
        return result, hash_arrays([a, b]), "-"
    weights = inputs["lif_weights"] if job["case"] == "lifNet" else inputs["weights"]
    clock = StepClock(job)
    train(job["case"], inputs, clock, job["seed"])
    return clock.result(steps_per_epoch(job["case"], c)), hash_arrays(weights), inputs["data"]["source"]


def main():
    job = json.loads(sys.argv[1])
    torch.set_num_threads(2)
    blas = "OpenBLAS (openmp)" if "openblas-openmp" in os.environ.get("LD_LIBRARY_PATH", "") else "default BLAS"
    backend = f"torch {torch.__version__} CPU, {torch.get_num_threads()} threads, {blas}"
    report = {"job": job, "backend": backend, "weightsHash": "", "dataSource": "-"}
    try:
        result, weights_hash, source = run_job(job)
        report.update(ok=True, result=result, weightsHash=weights_hash, dataSource=source)
    except Exception as e:  # reported to the parent, which marks the job failed
        report.update(ok=False, error=f"{type(e).__name__}: {e}")
    report["peakRssMB"] = peak_rss_mb()
    print("BENCH_REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
