#!/usr/bin/env bash
# setup_and_run.sh — Quick start 1: install the dependencies, build rnnc into
# build/, and run the main job (tools/main_job.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

rnnc_install_deps
rnnc_build "$RNNC_ROOT/build"
exec bash "$RNNC_ROOT/tools/main_job.sh" "$RNNC_ROOT/build/rnnc"
