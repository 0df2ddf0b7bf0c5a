"""Sampler accuracy against an exact answer: distribution error vs network evaluations (NFE).

Data is a Gaussian mixture whose optimal denoiser is analytic (`imagen.mixture`), so the error of the
sampled distribution is the sampler's own. Rows without guidance compare with the whole mixture; rows
with classifier-free guidance + thresholding compare with the guided class (guidance sharpens it, so
those errors are larger by design and only comparable with each other).

The 'conditioning' section measures where a grid should start: the exact denoiser's output is given in the
terms of an ε, v or x0 network plus an error of standard deviation 1e-3 (a well-trained network's), and each
grid is sampled (DDIM, deterministic) from t = 1 and from log-SNR LOGSNR_START (-8); the row is how far the
error moves the final samples (RMS), against the same run without error, and whether it is the library's start.

    python bench/samplers.py [--quick] [--samples N] [--sections accuracy,conditioning]
Prints a table, then one JSON object: {"rows": [{"sampler", "nfe", "guidance", "thresholding", "error",
"grid", "seconds"}, ...], "conditioning": [{"prediction", "grid", "first_log_snr", "library", "rms_moved"}, ...],
"machine": {...}}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit, machine  # noqa: E402
from imagen.denoiser import Condition, Denoiser  # noqa: E402
from imagen.guidance import guided  # noqa: E402
from imagen.mixture import GaussianMixture, MixtureNet, mixture_condition  # noqa: E402
from imagen.objective import target  # noqa: E402
from imagen.samplers import get_sampler, time_grid  # noqa: E402
from imagen.samplers.timesteps import TIME_GRIDS, first_time  # noqa: E402
from imagen.schedules import Schedule  # noqa: E402
from imagen.thresholding import make_x0_fn  # noqa: E402

SAMPLERS = {  # label -> (registry name, options, time grid)
    "ddpm": ("ddpm", {}, "uniform"),
    "ddim": ("ddim", {}, "uniform"),
    "ddim-logsnr": ("ddim", {}, "logsnr"),
    "dpm++2": ("dpm++", {"order": 2}, "logsnr"),
    "dpm++3": ("dpm++", {"order": 3}, "logsnr"),
    "dpm++2-uniform": ("dpm++", {"order": 2}, "uniform"),
}
GUIDED_CLASS = 2


def run_row(label: str, nfe: int, guidance: float, thresholding: str, samples: int) -> dict:
    name, options, grid = SAMPLERS[label]
    schedule = Schedule()
    mixture = GaussianMixture.default()
    denoiser = Denoiser(MixtureNet(mixture, schedule), schedule, prediction="x0")
    x_T = torch.randn(samples, mixture.means.shape[1], generator=torch.Generator().manual_seed(1))
    if guidance == 0.0:
        denoise = lambda x, t: denoiser(x, t, Condition()).x0  # noqa: E731
    else:
        denoise = guided(denoiser, mixture_condition(GUIDED_CLASS, samples), guidance)
    start = time.perf_counter()
    out = get_sampler(name, **options)(denoise, x_T, time_grid(grid, nfe, schedule), schedule=schedule,
                                       x0_fn=make_x0_fn(thresholding), generator=torch.Generator().manual_seed(2))
    seconds = time.perf_counter() - start
    error = mixture.error(out, component=None if guidance == 0.0 else GUIDED_CLASS)
    return {"sampler": label, "nfe": nfe, "guidance": guidance, "thresholding": thresholding,
            "error": round(error, 5), "grid": grid, "out_of_range": round(float((out.abs() > 1.0).float().mean()), 5),
            "seconds": round(seconds, 3)}


class ErrorInPrediction(torch.nn.Module):
    """The exact mixture denoiser as a network predicting `prediction` (eps, v or x0), with Gaussian error of
    standard deviation `error` on its output (the error a trained network makes, in its own terms)."""

    def __init__(self, exact: MixtureNet, schedule: Schedule, prediction: str, error: float):
        super().__init__()
        self.exact, self.schedule, self.prediction, self.error = exact, schedule, prediction, error
        self.generator = torch.Generator().manual_seed(3)

    def forward(self, x, time, **condition):
        x0 = self.exact(x, time, **condition)
        alpha, sigma = (v.to(x.dtype)[:, None] for v in self.schedule.alpha_sigma(time.double()))
        output = target(self.prediction, x0, (x - alpha * x0) / sigma, alpha, sigma)
        return output + self.error * torch.randn(output.shape, generator=self.generator, dtype=output.dtype)


def conditioning_rows(samples: int, nfe: int = 25, error: float = 1e-3) -> list[dict]:
    """How much a 1e-3 network error moves the final samples, per prediction, grid and start."""
    schedule = Schedule()
    mixture = GaussianMixture.default()
    exact = MixtureNet(mixture, schedule)
    x_T = torch.randn(samples, mixture.means.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows = []
    for prediction in ("eps", "v", "x0"):
        for grid in ("uniform", "logsnr", "karras"):
            for first in (1.0, first_time(schedule, "eps")):
                times = TIME_GRIDS[grid](nfe, schedule, first)
                outs = []
                for noise in (0.0, error):
                    denoiser = Denoiser(ErrorInPrediction(exact, schedule, prediction, noise), schedule, prediction)
                    outs.append(get_sampler("ddim")(lambda x, t, d=denoiser: d(x, t, Condition()).x0, x_T, times,
                                                    schedule=schedule))
                first_log_snr = float(schedule.log_snr(times[:1])[0])
                rows.append({"prediction": prediction, "grid": grid, "first_log_snr": round(first_log_snr, 2),
                             "library": first == first_time(schedule, prediction),
                             "rms_moved": float(f"{(outs[1] - outs[0]).pow(2).mean().sqrt().item():.3g}")})
                print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and step counts (a smoke run)")
    parser.add_argument("--samples", type=int, default=None, help="samples per row (default 50000, quick 5000)")
    parser.add_argument("--sections", default="accuracy,conditioning", help="comma-separated: accuracy,conditioning")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",")}
    samples = args.samples or (5000 if args.quick else 50_000)
    nfes = [10, 25] if args.quick else [5, 10, 15, 20, 25, 50, 100, 250]
    rows = []
    settings = [(0.0, "none"), (3.0, "none"), (3.0, "static"), (3.0, "dynamic")]
    if not args.quick:
        settings += [(8.0, "static"), (8.0, "dynamic")]
    for guidance, thresholding in settings if "accuracy" in sections else []:
        for label in SAMPLERS:
            for nfe in nfes:
                rows.append(run_row(label, nfe, guidance, thresholding, samples))
                r = rows[-1]
                print(f"{r['sampler']:>7} nfe {r['nfe']:>3}  w {r['guidance']:>3}  {r['thresholding']:>7}  "
                      f"error {r['error']:.4f}  out of range {r['out_of_range']:.4f}", flush=True)
    mixture = GaussianMixture.default()
    reference = mixture.error(mixture.sample(samples, torch.Generator().manual_seed(5)))
    conditioning = conditioning_rows(min(samples, 5000)) if "conditioning" in sections else []
    emit({"rows": rows, "conditioning": conditioning, "samples": samples, "reference_error": round(reference, 5),
          "note": "reference_error: exact samples of the mixture scored the same way (the sampling-noise floor)",
          "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
