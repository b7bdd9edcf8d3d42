"""Exponentially weighted averages of a year of daily temperatures, with and without bias correction.

v_t = beta*v_{t-1} + (1-beta)*theta_t from v_0 = 0, through ``jaxmom.ema``; the three betas are one
vmapped, jitted call (``jaxmom.studies.tutorials.ema_curves``). Bias correction divides by 1 - beta^t.

    python experiments/ema.py --out runs/ema
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
from _plotting import output_dir, save

from jaxmom.studies import tutorials

BETAS = (0.5, 0.9, 0.98)
COLORS = {0.5: "gold", 0.9: "red", 0.98: "green"}


def summary(series, curve):
    """RMS distance to the data and the std of day-to-day changes: fit versus smoothness."""
    return np.sqrt(np.mean((curve - series) ** 2)), np.std(np.diff(curve))


def plot(series, source, plain, corrected):
    days = np.arange(1, len(series) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 9), sharex=True)
    for ax in (top, bottom):
        ax.scatter(
            days, series, s=9, color="tab:blue", alpha=0.55, label=r"daily temperature $\theta_t$"
        )
        ax.grid(alpha=0.25)
        ax.set_ylabel("temperature (°C)")
    for beta, curve in zip(BETAS, plain):
        top.plot(
            days,
            curve,
            color=COLORS[beta],
            lw=2.2,
            label=f"β = {beta}  (averages ≈ 1/(1-β) = {1 / (1 - beta):.0f} days)",
        )
    top.set_title(
        r"$v_t = \beta\, v_{t-1} + (1-\beta)\,\theta_t$, $v_0 = 0$: "
        "larger β is smoother but lags behind the data"
    )
    top.legend(loc="upper left", fontsize=9)
    bottom.plot(
        days, plain[-1], color="purple", lw=2.2, label=r"β = 0.98, no bias correction: $v_t$"
    )
    bottom.plot(
        days,
        corrected,
        color="green",
        lw=2.2,
        label=r"β = 0.98, bias-corrected: $v_t\,/\,(1 - \beta^t)$",
    )
    bottom.set_title(
        r"Bias correction: $v_0 = 0$ drags the early average towards zero; "
        r"dividing by $1 - \beta^t$ removes it"
    )
    bottom.legend(loc="upper left", fontsize=9)
    bottom.set_xlabel("day of the year")
    bottom.set_xlim(0, len(series) + 1)
    fig.suptitle(f"Exponentially weighted averages (jaxmom.ema)\ndata: {source}", fontsize=12)
    fig.tight_layout()
    return fig


def main(argv=None):
    out = output_dir(argv, "ema", __doc__.splitlines()[0])
    series, source = tutorials.seattle_temperature_2012()
    plain = tutorials.ema_curves(series, BETAS)
    corrected = tutorials.ema_curves(series, BETAS[-1:], debias=True)[0]
    print(
        f"{len(series)} days of {source}: mean {series.mean():.1f} °C, "
        f"range {series.min():.1f} to {series.max():.1f} °C"
    )
    print("beta   window 1/(1-beta)   RMS distance to data (°C)   std of daily change (°C)")
    print(f"data   {'-':>19}   {0.0:>26.2f}   {np.std(np.diff(series)):>24.2f}")
    for beta, curve in zip(BETAS, plain):
        rms, rough = summary(series, curve)
        print(f"{beta:<6} {1 / (1 - beta):>19.0f}   {rms:>26.2f}   {rough:>24.2f}")
    print("beta = 0.98, first days: data / plain v_t / corrected v_t/(1-beta^t):")
    for t in (1, 2, 5, 10, 30, 60):
        print(
            f"  day {t:>2}: {series[t - 1]:6.2f} / {plain[-1, t - 1]:6.2f} / {corrected[t - 1]:6.2f}"
        )
    print(
        f"mean gap to the data over the first 30 days: plain "
        f"{np.mean(np.abs(plain[-1, :30] - series[:30])):.2f} °C, corrected "
        f"{np.mean(np.abs(corrected[:30] - series[:30])):.2f} °C"
    )
    save(plot(series, source, plain, corrected), out / "ema.png")


if __name__ == "__main__":
    main(sys.argv[1:])
