"""``smite.segment``, ``smite.learn`` and ``smite.send_to_farm``: modal with a timer from the UI,
blocking from scripts.

Invoked from a button they return at once and poll the server on a timer (progress in the
status bar cursor and the panel, Esc cancels); executed from Python (``bpy.ops.smite.segment()``)
they poll the same way in a loop, which is how the headless test drives them.
"""

from __future__ import annotations

import threading
import time

import bpy

from . import corelink, shotplan
from .jobs import Job

POLL_S = 0.25
FINAL = ("done", "failed", "cancelled")


class _SmiteJobOperator:
    method = "segment"
    _job = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "smite") and not context.scene.smite.running

    def _start(self, context):
        self._job = Job(context, self.method)
        try:
            self._job.start()
        except (shotplan.PlanError, ImportError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"SMITE: {exc}")
            context.scene.smite.status = f"{self.method} failed: {exc}"
            return False
        except Exception as exc:  # RpcError from the client: the server's one-line message
            self.report({"ERROR"}, f"SMITE: {getattr(exc, 'message', exc)}")
            context.scene.smite.status = f"{self.method} failed: {getattr(exc, 'message', exc)}"
            return False
        context.scene.smite.running = True
        return True

    def _end(self, context, state):
        context.scene.smite.running = False
        if state == "done":
            self.report({"INFO"}, f"SMITE {self.method}: {self._job.message}")
            return {"FINISHED"}
        level = {"WARNING"} if state == "cancelled" else {"ERROR"}
        self.report(level, f"SMITE {self.method} {state}: {self._job.message}")
        return {"CANCELLED"}

    def _step(self, context):
        try:
            return self._job.step()
        except Exception as exc:  # a failure while building results must end the job, not the timer
            self._job.message = str(exc)
            context.scene.smite.status = f"{self.method} failed: {exc}"
            return "failed"

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        state = self._step(context)
        while state not in FINAL:
            time.sleep(POLL_S)
            state = self._step(context)
        return self._end(context, state)

    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_S, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and self._job.state not in FINAL:
            self._job.cancel()  # keep polling: the server confirms with a cancelled 'done'
            context.scene.smite.status = f"{self.method}: cancelling..."
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = self._step(context)
        wm = context.window_manager
        wm.progress_update(int(100 * context.scene.smite.progress))
        for area in context.screen.areas if context.screen else []:
            if area.type == "NODE_EDITOR":
                area.tag_redraw()
        if state not in FINAL:
            return {"RUNNING_MODAL"}
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        return self._end(context, state)


class SMITE_OT_segment(_SmiteJobOperator, bpy.types.Operator):
    """Render the mask keyframes, segment the plate and add a "SMITE Matte" node with one output per part"""

    bl_idname = "smite.segment"
    bl_label = "Segment"
    method = "segment"


class SMITE_OT_learn(_SmiteJobOperator, bpy.types.Operator):
    """Learn a part model from the mask keyframes (diffusion backend)"""

    bl_idname = "smite.learn"
    bl_label = "Learn"
    method = "learn"


class SMITE_OT_send_to_farm(bpy.types.Operator):
    """Render the mask keyframes and write farm jobs for this shot: <cache>/farm/job.yaml (OpenJD) and
    <cache>/farm/deadline/ (Deadline 10). Nothing is submitted"""

    bl_idname = "smite.send_to_farm"
    bl_label = "Send to farm"

    _thread = None
    _timer = None
    _box = None  # {"result": (ok, text)}: the worker thread writes a plain dict, never the operator (a bpy struct)

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "smite") and not context.scene.smite.running

    def _start(self, context):
        """Prepare exactly like Segment (references + shot.json) on the main thread; then the commands."""
        props = context.scene.smite
        try:
            job = Job(context, "segment")
            job.prepare()
            commands = job.farm_commands()
        except (shotplan.PlanError, ImportError, OSError, RuntimeError) as exc:
            return self._report(context, f"farm failed: {exc}", ok=False)
        core, box, farmcmd = job.core, {}, corelink.hostapi("farmcmd")
        self._box = box

        def work():  # no bpy here: the modal timer (or execute) reads the result on the main thread
            try:
                box["result"] = (True, farmcmd.summary(farmcmd.write_farm_files(commands, core=core)))
            except Exception as exc:
                box["result"] = (False, f"farm failed: {exc}")

        props.status = "farm: writing job files"
        self._thread = threading.Thread(target=work, name="smite-farm", daemon=True)
        self._thread.start()
        return None

    def _report(self, context, text, ok):
        context.scene.smite.status = text[:250]
        context.scene.smite.running = False
        self.report({"INFO"} if ok else {"ERROR"}, f"SMITE {text}")
        return {"FINISHED"} if ok else {"CANCELLED"}

    def execute(self, context):
        early = self._start(context)
        if early is not None:
            return early
        self._thread.join()
        ok, text = self._box["result"]
        return self._report(context, text, ok)

    def invoke(self, context, event):
        early = self._start(context)
        if early is not None:
            return early
        context.scene.smite.running = True
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        for area in context.screen.areas if context.screen else []:
            if area.type == "NODE_EDITOR":
                area.tag_redraw()
        ok, text = self._box["result"]
        return self._report(context, text, ok)


CLASSES = (SMITE_OT_segment, SMITE_OT_learn, SMITE_OT_send_to_farm)
