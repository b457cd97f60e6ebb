"""Open Job Description (2023-09) template for a SMITE job: the canonical farm description.

The template runs locally with `openjd run job.yaml` and unchanged on AWS Deadline Cloud. The
Segment step's frame parameter is `CHUNK[INT]` (TASK_CHUNKING extension) with contiguous chunks,
so each task gets one range such as "1001-1016" and runs `smite segment --frames 1001-1016`.
Shot, output, frames, chunk size, context and the interpreter are job parameters, so a wrangler
can change them at submission without regenerating the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from ..config import Settings
from ..errors import BadInputError
from .job import FarmJob

SPEC_VERSION = "jobtemplate-2023-09"
EXTENSIONS = ["TASK_CHUNKING"]
log = logging.getLogger(__name__)


def _args(args: list[str], job: FarmJob, frames: str) -> list[str]:
    """Replace the job's own values by the template's parameters, so submission can change them."""
    subst = {job.shot: "{{Param.ShotFile}}", job.out: "{{Param.OutputPattern}}", frames: "{{Task.Param.Frame}}"}
    if job.parts:
        subst[job.parts] = "{{Param.PartModel}}"
    out = [subst.get(a, a) for a in args]
    if "--context" in out:
        out[out.index("--context") + 1] = "{{Param.Context}}"
    return out


def openjd_template(job: FarmJob) -> dict[str, Any]:
    """The job template as a plain dict (see module doc); validate with `validate_template`.

    Paths are STRING parameters with absolute defaults: OpenJD accepts PATH defaults only inside
    the template's own folder, and a studio farm reads shots and writes mattes on shared storage.
    The interpreter may also be a bare command found on the worker's PATH.
    """
    token = "@FRAMES@"
    job_ctx = job if job.context is not None else _with_context(job)
    params: list[dict[str, Any]] = [
        _string("SmitePython", job.python, "Python of the SMITE venv on the workers; tasks run '<this> -m smite'"),
        _string("ShotFile", job.shot, "SMITE shot manifest (JSON)"),
        _string("OutputPattern", job.out, "matte EXR pattern with a frame token, e.g. /out/mattes.####.exr"),
        _string("Frames", job.frame_range, "contiguous frame range to render, e.g. 1001-1100"),
        {"name": "ChunkSize", "type": "INT", "default": job.chunk, "minValue": 1,
         "description": "frames per Segment task"},
        {"name": "Context", "type": "INT", "default": job_ctx.context, "minValue": 0,
         "description": "extra frames read on each side of a chunk (chunk borders match a single run)"},
    ]
    if job.parts:
        params.append(_string("PartModel", job.parts, "part model file (.smite): Learn writes it, Segment reads it"))
    host = {"amounts": [{"name": "amount.worker.gpu", "min": job.gpus}]} if job.gpus > 0 else None
    steps: list[dict[str, Any]] = []
    if job.needs_learn:
        steps.append(_step("Learn", _args(job_ctx.learn_args(), job_ctx, token), host))
    segment = _step("Segment", _args(job_ctx.segment_args(token), job_ctx, token), host)
    segment["parameterSpace"] = {
        "taskParameterDefinitions": [{
            "name": "Frame",
            "type": "CHUNK[INT]",
            "range": "{{Param.Frames}}",
            "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": "CONTIGUOUS"},
        }]
    }
    if job.needs_learn:
        segment["dependencies"] = [{"dependsOn": "Learn"}]
    steps.append(segment)
    return {
        "specificationVersion": SPEC_VERSION,
        "extensions": list(EXTENSIONS),
        "name": job.name,
        "description": f"SMITE part mattes for {job.shot} -> {job.out}",
        "parameterDefinitions": params,
        "steps": steps,
    }


def _with_context(job: FarmJob) -> FarmJob:
    return replace(job, context=Settings().context)


def _string(name: str, default: str, description: str) -> dict[str, Any]:
    return {"name": name, "type": "STRING", "default": default, "minLength": 1, "description": description}


def _step(name: str, args: list[str], host: dict[str, Any] | None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "name": name,
        "script": {"actions": {"onRun": {"command": "{{Param.SmitePython}}", "args": args}}},
    }
    if host:
        step["hostRequirements"] = host
    return step


def validate_template(template: dict[str, Any]) -> Any:
    """Decode with openjd-model (the `farm` extra); raises BadInputError on an invalid template.

    Without openjd-model the template is returned unchecked (a warning says so).
    """
    try:
        from openjd.model import DecodeValidationError, decode_job_template
    except ImportError:
        log.warning("openjd-model is not installed: the OpenJD template is not validated (install smite[farm])")
        return template
    try:
        return decode_job_template(template=template, supported_extensions=EXTENSIONS)
    except DecodeValidationError as exc:
        raise BadInputError(f"invalid OpenJD template: {' '.join(str(exc).split())}") from None


def to_text(template: dict[str, Any]) -> str:
    """YAML text of the template in template order (JSON, which OpenJD also reads, without PyYAML)."""
    try:
        import yaml
    except ImportError:
        return json.dumps(template, indent=2) + "\n"
    return yaml.safe_dump(template, sort_keys=False, width=120)
