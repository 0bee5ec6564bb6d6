"""Write the table of TorchRL's public names that tdrl provides, for the compatibility page.

For each public TorchRL module below, the names it exports (its ``__all__``, or the classes
and functions it defines) are looked up at the same path with ``torchrl`` replaced by
``tdrl``. The result is ``docs/_generated/torchrl_names.md``, included by
``docs/compatibility.md``. It needs TorchRL installed, so it runs in the low venv:

    .venv-td014/bin/python scripts/torchrl_names.py          # rewrite the table
    .venv-td014/bin/python scripts/torchrl_names.py --check  # exit 1 if it is out of date

``tests/test_compatibility_page.py`` runs the check, so the page stays true.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "_generated" / "torchrl_names.md"

MODULES = [
    "torchrl",
    "torchrl.envs",
    "torchrl.envs.transforms",
    "torchrl.envs.libs.gym",
    "torchrl.envs.libs.dm_control",
    "torchrl.envs.libs.vmas",
    "torchrl.envs.libs.pettingzoo",
    "torchrl.envs.utils",
    "torchrl.collectors",
    "torchrl.collectors.distributed",
    "torchrl.data",
    "torchrl.data.replay_buffers",
    "torchrl.modules",
    "torchrl.objectives",
    "torchrl.objectives.value",
    "torchrl.record",
    "torchrl.record.loggers",
    "torchrl.trainers",
    "torchrl.checkpoint",
]


def exported(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", "") == module_name
        ]
    return sorted(dict.fromkeys(names))


def provided(module_name: str, names: list[str]) -> tuple[list[str], list[str]]:
    try:
        ours = importlib.import_module("tdrl" + module_name[len("torchrl") :])
    except ImportError:
        return [], names
    have = [name for name in names if hasattr(ours, name)]
    return have, [name for name in names if name not in have]


def render() -> str:
    import torchrl

    lines = [
        f"<!-- written by scripts/torchrl_names.py against TorchRL {torchrl.__version__}; do not edit -->",
        "",
        "| TorchRL module | tdrl provides | of |",
        "|---|---|---|",
    ]
    details = []
    total_have = total = 0
    for module_name in MODULES:
        names = exported(module_name)
        have, missing = provided(module_name, names)
        total_have += len(have)
        total += len(names)
        ours = "tdrl" + module_name[len("torchrl") :]
        lines.append(f"| `{module_name}` | {len(have)} | {len(names)} |")
        details += [f"### `{module_name}` → `{ours}`", ""]
        details.append("Provided: " + (", ".join(f"`{n}`" for n in have) if have else "none") + ".")
        details.append("")
        details.append("Not yet: " + (", ".join(f"`{n}`" for n in missing) if missing else "none") + ".")
        details.append("")
    lines.append(f"| all | {total_have} | {total} |")
    return "\n".join([*lines, "", *details]).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed table is out of date")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run `.venv-td014/bin/python scripts/torchrl_names.py`")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print("wrote", OUT.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
