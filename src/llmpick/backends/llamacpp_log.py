"""llama.cpp's process-wide log, captured into a list instead of stderr."""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["LOG_LOCK", "install_log_capture", "log_state"]

LOG_LOCK = threading.Lock()
log_state: dict[str, Any] = {}


def install_log_capture() -> list[str]:
    """Route llama.cpp's (process-wide) log into a list instead of stderr.

    llama-cpp-python prints some messages even with ``verbose=False``; the
    log also holds what we want to keep, such as the KV buffer sizes.
    """
    import ctypes

    import llama_cpp

    if "callback" not in log_state:
        lines: list[str] = []

        @llama_cpp.llama_log_callback
        def _capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            lines.append(text.decode("utf-8", errors="replace"))
            if log_state.get("echo"):
                os.write(2, text)

        log_state["callback"] = _capture
        log_state["lines"] = lines
        llama_cpp.llama_log_set(_capture, ctypes.c_void_p(0))
    buffer: list[str] = log_state["lines"]
    buffer.clear()
    return buffer
