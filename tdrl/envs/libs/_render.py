"""One clear error when MuJoCo cannot render (no OpenGL backend), shared by the gym and dm_control backends.

MuJoCo picks its OpenGL backend from the ``MUJOCO_GL`` environment variable when its
renderer is first loaded. A machine without a display needs ``egl`` (a GPU or Mesa's EGL)
or ``osmesa`` (software); a wrong or missing value surfaces deep inside mujoco, PyOpenGL or
gymnasium as an AttributeError, a FatalError or an EGL error. :func:`render_error` turns such
a failure into one RuntimeError that names ``MUJOCO_GL``, its current value and the values
to try; a failure elsewhere is left as it is.
"""

from __future__ import annotations

import os
import traceback

__all__ = ["note_gl_failure", "refuse_after_gl_failure", "render_error"]

#: the backends MuJoCo accepts, in the order worth trying on a headless machine
MUJOCO_GL_VALUES = ("egl", "osmesa", "glfw")

_NO_BACKEND = (
    "{what}: MuJoCo could not render: no working OpenGL backend (MUJOCO_GL={current}). "
    "Fix: set MUJOCO_GL in the environment before the program starts (before mujoco, gymnasium or "
    "dm_control are imported): MUJOCO_GL=egl on a headless machine with EGL (a GPU driver or Mesa's libEGL), "
    "MUJOCO_GL=osmesa for software rendering (needs libOSMesa), MUJOCO_GL=glfw with a display. "
    "The backend's own error: {err}"
)
# MuJoCo's first failed OpenGL start in a process breaks its renderer for good: a second render
# call aborts the whole process in native code (libc++abi, recursive static initialization)
_gl_failure: str | None = None

_GL_MODULES = ("/mujoco/", "/OpenGL/", "/dm_control/_render/", "mujoco_rendering")
_GL_WORDS = ("MUJOCO_GL", "OpenGL", "EGL", "OSMesa", "GLFW", "mjr_makeContext", "glGetError")


def _from_gl(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) comes out of MuJoCo's OpenGL layer."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = f"{type(current).__name__} {current}"
        if any(word in text for word in _GL_WORDS):
            return True
        frames = traceback.extract_tb(current.__traceback__)
        if any(marker in frame.filename for frame in frames[-3:] for marker in _GL_MODULES):
            return True
        current = current.__cause__ or current.__context__
    return False


def render_error(err: BaseException, what: str) -> BaseException:
    """The error to raise for ``err``, raised by a render call of ``what`` (an env's name).

    Returns:
        A RuntimeError naming ``MUJOCO_GL`` when ``err`` comes from MuJoCo's OpenGL layer
        (raise it ``from err``), else ``err`` itself.

    Examples:
        >>> render_error(ValueError("bad width"), "GymEnv")
        ValueError('bad width')
        >>> "MUJOCO_GL" in str(render_error(RuntimeError("invalid value for MUJOCO_GL: x"), "GymEnv"))
        True
    """
    if not _from_gl(err):
        return err
    current = os.environ.get("MUJOCO_GL")
    shown = "<unset>" if current is None else repr(current)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RuntimeError(_NO_BACKEND.format(what=what, current=shown, err=f"{type(err).__name__}: {first}"))


def note_gl_failure(err: BaseException) -> None:
    """Remember that MuJoCo's own renderer failed here for want of OpenGL (``err`` from its render call).

    Call it only with an error a real MuJoCo render raised: from then on
    :func:`refuse_after_gl_failure` raises instead of letting MuJoCo try again.
    """
    global _gl_failure
    if _from_gl(err):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        _gl_failure = f"{type(err).__name__}: {first}"


def refuse_after_gl_failure(what: str) -> None:
    """Raise the clear MuJoCo-rendering error again if MuJoCo's OpenGL start already failed here.

    Call it before each MuJoCo render: after one failure, calling MuJoCo's renderer again
    aborts the process (a native crash, no exception), and the backend cannot change within a
    process anyway (``MUJOCO_GL`` is read when mujoco is imported).

    Raises:
        RuntimeError: naming ``MUJOCO_GL``, when an earlier render in this process failed for
            want of an OpenGL backend.

    Examples:
        >>> refuse_after_gl_failure("GymEnv")  # nothing failed yet: returns None
    """
    if _gl_failure is not None:
        current = os.environ.get("MUJOCO_GL")
        shown = "<unset>" if current is None else repr(current)
        raise RuntimeError(
            _NO_BACKEND.format(what=what, current=shown, err=f"(an earlier render in this process) {_gl_failure}")
        )
