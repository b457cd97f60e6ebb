"""Deadline 10 submission files for a SMITE shot: the CommandLine plugin, chunked by Deadline.

`job_info.job` / `plugin_info.job` describe the Segment job (Frames, ChunkSize, the interpreter
and arguments with `<STARTFRAME>`/`<ENDFRAME>`, which Deadline clamps to the job's frames). When a
part model must be trained, `learn_job_info.job` / `learn_plugin_info.job` describe the Learn job;
Segment then depends on it either by id (`learn_job_id`, written as JobDependencies) or by
submitting both at once: `deadlinecommand -SubmitMultipleJobs -dependent -job learn_job_info.job
learn_plugin_info.job -job job_info.job plugin_info.job`.
"""

from __future__ import annotations

import os

from .job import FarmJob


def _file(entries: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in entries.items())


def _arguments(args: list[str]) -> str:
    """One Arguments line: an argument with blanks is double-quoted, a quote inside it is `<QUOTE>`."""
    return " ".join(_quote(a) for a in args)


def _quote(arg: str) -> str:
    arg = arg.replace('"', "<QUOTE>")
    return arg if arg and not any(c.isspace() for c in arg) else f'"{arg}"'


def deadline_files(job: FarmJob, learn_job_id: str | None = None, pool: str | None = None,
                   group: str | None = None) -> dict[str, str]:
    """{file name: text} of the job (see module doc)."""
    common = {"Plugin": "CommandLine", "BatchName": job.name}
    if pool:
        common["Pool"] = pool
    if group:
        common["Group"] = group
    files: dict[str, str] = {}
    if job.needs_learn:
        files["learn_job_info.job"] = _file({**common, "Name": f"{job.name} learn", "Frames": str(job.first),
                                             "ChunkSize": "1"})
        files["learn_plugin_info.job"] = _file({"Executable": job.python, "Arguments": _arguments(job.learn_args()),
                                                "ShellExecute": "False"})
    info = {**common, "Name": f"{job.name} segment", "Frames": job.frame_range, "ChunkSize": str(job.chunk)}
    if job.needs_learn and learn_job_id:
        info["JobDependencies"] = learn_job_id
    out_folder, out_name = os.path.split(job.out)
    info["OutputDirectory0"] = out_folder
    info["OutputFilename0"] = out_name
    files["job_info.job"] = _file(info)
    files["plugin_info.job"] = _file({"Executable": job.python,
                                      "Arguments": _arguments(job.segment_args("<STARTFRAME>-<ENDFRAME>")),
                                      "ShellExecute": "False"})
    return files
