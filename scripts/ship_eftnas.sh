#!/usr/bin/env bash
# Copy the results of finished EFTNAS runs (no weights) into assets/reference_eftnas/, where the
# explorer's EFTNAS tab shows them at first look and scripts/eftnas_table.py reads them.
#   bash scripts/ship_eftnas.sh out/eftnas/minilm-rte [more run folders]
set -euo pipefail
cd "$(dirname "$0")/.."
for run in "$@"; do
    name=$(basename "$run")
    dest="assets/reference_eftnas/$name"
    rm -rf "$dest" && mkdir -p "$dest/supernet"
    cp "$run/eftnas.json" "$run/front.json" "$run/importance.json" "$run/stages.json" "$dest/"
    cp "$run/supernet/search_space.json" "$dest/supernet/"
    printf '{"command": "%s", "shipped": "%s", "commit": "%s"}\n' \
        "TASKS=${name#minilm-} bash scripts/eftnas_glue.sh" "$(date -u +%FT%TZ)" \
        "$(git rev-parse --short HEAD)" > "$dest/provenance.json"
    echo "shipped $dest"
done
