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
    task=${name#minilm-}; upper=${task^^}
    epochs=$(.venv/bin/python -c "import json; s=json.load(open('$run/eftnas.json'))['settings']; \
print(' '.join(f'{k}_EPOCHS_$upper={s[v]}' for k, v in (('FT', 'finetune_epochs'), ('MV', 'movement_epochs'), ('SN', 'supernet_epochs'))))")
    retimed=$(.venv/bin/python -c "import json; print('yes' if 'retimed' in json.load(open('$run/eftnas.json')) else 'no')")
    printf '{"command": "%s", "retimed": "%s", "shipped": "%s", "commit": "%s"}\n' \
        "RERUN=1 TASKS=$task $epochs bash scripts/eftnas_glue.sh" \
        "$([ "$retimed" = yes ] && echo "scripts/eftnas_retime.py $run" || echo no)" "$(date -u +%FT%TZ)" \
        "$(git rev-parse --short HEAD)" > "$dest/provenance.json"
    echo "shipped $dest"
done
