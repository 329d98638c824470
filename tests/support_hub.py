"""What the hub tests need from the machine (they skip, saying why, without it)."""

from __future__ import annotations

import os
import shutil


def hub_missing() -> str:
    """Why the hub tests cannot run here ("" if they can)."""
    if os.geteuid() != 0:
        return "needs root: the hub creates a unix user per student"
    if shutil.which("configurable-http-proxy") is None:
        return "needs configurable-http-proxy: npm install -g configurable-http-proxy"
    if shutil.which("nft") is None:
        return "needs nft: apt-get install nftables"
    return ""
