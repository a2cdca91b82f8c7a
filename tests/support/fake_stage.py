"""A real stage process for runner tests: honours the stage contract's env and exits with a chosen code.

``python -m tests.support.fake_stage NAME CODE [ARGS…]`` appends its argv to ``$FAKE_STAGE_LOG`` and, when CODE
is 0, writes a result JSON to ``$IRMSIA_RESULT_FILE`` like ``jobs.core.entrypoint`` does. It prints one line
(``fake NAME says hello``) and, when ``$IRMSIA_PROGRESS_FILE`` is set, reports a three-item task through
``jobs.core.progress`` as a real stage would; a failing one writes its error into the result file.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    name, code, *rest = argv
    with open(os.environ["FAKE_STAGE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"name": name, "argv": rest, "store": os.environ.get("IRMSIA_STORE"),
                              "workflow_id": os.environ.get("IRMSIA_WORKFLOW_ID")}) + "\n")  # fmt: skip
    print(f"fake {name} says hello", flush=True)
    if os.environ.get("IRMSIA_PROGRESS_FILE"):
        from jobs.core import progress

        progress.configure(os.environ["IRMSIA_PROGRESS_FILE"], "text")
        for _ in progress.progress(range(3), 3, f"{name} items", unit="items"):
            pass
    if int(code) != 0 and os.environ.get("IRMSIA_RESULT_FILE"):
        with open(os.environ["IRMSIA_RESULT_FILE"], "w", encoding="utf-8") as fh:
            json.dump({"stage": name, "exit_code": int(code), "error": f"{name} broke"}, fh)
    if int(code) == 0 and os.environ.get("IRMSIA_RESULT_FILE"):
        with open(os.environ["IRMSIA_RESULT_FILE"], "w", encoding="utf-8") as fh:
            summary = {"argc": len(rest), **({"run_id": f"{name}-run"} if os.environ.get("FAKE_STAGE_RUN_ID") else {})}
            json.dump({"stage": name, "prefix": f"{name}/", "cached": False, "summary": summary}, fh)
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
