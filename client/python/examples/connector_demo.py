#!/usr/bin/env python3
"""Runs the demo of the vLLM connector core (vkv.connector): connector_demo.py --vkvd PATH | --rundir DIR."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vkv.vllm_connector import main  # noqa: E402

sys.exit(main(["--demo"] + sys.argv[1:]))
