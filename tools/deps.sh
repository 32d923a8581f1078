# deps.sh — the one list of Debian 12 packages rnnc needs to build and test.
# Sourced by tools/setup_and_run.sh and tools/test.sh (not run on its own).
#
# python3-torch is optional and never needed: only tools/gen_fixtures.py uses it,
# to regenerate the committed PyTorch reference fixtures.

RNNC_PACKAGES=(
  build-essential   # gcc (with libgomp, OpenMP), make
  cmake             # >= 3.25 (Debian 12 has 3.25)
  pkg-config        # finds jansson and criterion
  llvm-19-dev       # LLVM 19 C API, for the code generator
  libsleef-dev      # SLEEF vector math
  libcriterion-dev  # the test framework
  libjansson-dev    # JSON, for safetensors headers
  zlib1g-dev        # gzip'ed data sets (Fashion-MNIST's IDX files)
  fortunes          # English text: the main job's corpus, and test data
  dataset-fashion-mnist # Fashion-MNIST IDX files (classifier example and tests)
)

# Install the packages that are missing (apt-get update, then apt-get install).
# Does nothing when every package is already installed.
rnnc_install_deps() {
  local missing=() p
  for p in "${RNNC_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#RNNC_PACKAGES[@]} packages are installed"
    return 0
  fi
  echo "deps: installing ${missing[*]}"
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: run as root to install: ${missing[*]}" >&2; return 1; }
    sudo=sudo
  fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
}

# Configure and build rnnc into build directory $1 with extra CMake arguments.
rnnc_build() {
  local dir=$1
  shift
  cmake -S "$RNNC_ROOT" -B "$dir" "$@"
  cmake --build "$dir" -j "$(nproc)"
}

RNNC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
