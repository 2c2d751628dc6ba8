"""Build the Lambda layer zip and the function zip into a folder, without deploying.

    python runtime_layer/build.py --out dist/ --python-version 3.12 --architecture arm64 \
        --package scikit-learn

``lambdamr deploy`` does the same build itself (and skips it when the published layer was
built from the same packages); this script is for inspecting or uploading by hand. The
build logic lives in ``lambdamr.deploy.layer`` so that an installed lambdamr can deploy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lambdamr.deploy.layer import build_layer, function_package, unzipped_size
from lambdamr.deploy.options import ARCHITECTURES, LAMBDA_PYTHONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"))
    parser.add_argument("--python-version", choices=LAMBDA_PYTHONS, default="{}.{}".format(*sys.version_info[:2]))
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="x86_64")
    parser.add_argument("--package", action="append", default=[], help="extra package (repeatable)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    package = function_package()
    (args.out / "function.zip").write_bytes(package)
    with tempfile.TemporaryDirectory(prefix="lambdamr-layer-") as workdir:
        build = build_layer(
            args.python_version, args.architecture, args.package, workdir=Path(workdir), function_unzipped=unzipped_size(package)
        )
    (args.out / "layer.zip").write_bytes(build.zip_bytes)
    print(
        f"function.zip: {len(package) / 1024:.0f} KB; layer.zip: {build.zipped_size / 2**20:.1f} MB zipped, "
        f"{build.unzipped_size / 2**20:.1f} MB unzipped{' (uploaded through S3: over 50 MB)' if build.needs_s3_upload else ''}"
    )
    for name, size in list(build.sizes.items())[:8]:
        print(f"  {name:30s} {size / 2**20:7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
