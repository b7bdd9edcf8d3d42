"""A sweep across 2 processes (jax.distributed, gloo collectives), 2 CPU devices each, equals the same
grid run in one process; every process receives the whole gathered grid."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if process_id >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                                   initialization_timeout=60, shutdown_timeout_seconds=30)
    from jaxmom import sweep
    from sweep_problem import X, Y, regression
    grid = sweep.product(lr=[0.01, 0.05, 0.1], momentum=[0.0, 0.5, 0.9]).with_seeds(1)  # 9 cells
    res = sweep.sweep(regression, grid, args=(X, Y), chunk_size=2)  # pads to 12 cells, 3 per device
    np.savez(out, devices=len(res.devices), processes=jax.process_count(),
             diverged=res.diverged, **res.metrics)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    port = free_port()
    outs = [tmp_path / f"p{i}.npz" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(outs[i])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)

    single = tmp_path / "single.npz"
    one = subprocess.run(
        [sys.executable, "-c", WORKER, "0", "-1", str(single)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr[-2000:]

    ref = np.load(single)
    assert (int(ref["devices"]), int(ref["processes"])) == (2, 1)
    for out in outs:
        got = np.load(out)
        assert (int(got["devices"]), int(got["processes"])) == (4, 2)
        assert got["loss"].shape == (3, 3, 1, 12)
        for name in ("loss", "final_loss", "w", "diverged"):
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-6, atol=1e-7, err_msg=name)
