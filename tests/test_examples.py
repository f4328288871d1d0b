"""The examples run from a fresh process and print what the README promises."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(*args: str, timeout: float = 120) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_demo_trains_and_prints():
    out = run_script(os.path.join("examples", "demo.py"))
    losses = [float(line.split("loss")[1].split()[0]) for line in out.splitlines()
              if line.startswith("step")]
    assert len(losses) >= 3
    assert losses[-1] < 0.5 * losses[0], out  # the loss falls
    assert "per-example gradient norms" in out
    assert "Hessian" in out
