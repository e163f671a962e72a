#!/usr/bin/env bash
# Fails when the repository refers to a file outside itself. A clone has the repository and
# nothing beside it, so documentation, code comments and scripts must cite files inside it
# (the design is docs/design.md, the agent API contract docs/agent-api.md, the messenger
# platforms' notes docs/platforms.md).
#
# It searches the files git knows (tracked, and untracked ones that are not ignored) for:
#   - the sibling folder the project was first written beside;
#   - absolute paths under /work/, /root/ and /home/ (developers' and CI machines' trees);
#   - the parent directory of this checkout, wherever it is (unless that is a system
#     directory the repository names for good reasons, such as /var/tmp);
#   - the names of the reference files that lived in that sibling folder, as long as no file
#     of that name exists in the repository.
# Cargo.lock and this script are not searched. Prints every offending line; exit status 0
# when there is none, 1 otherwise. Run it from anywhere: deploy/check-standalone.sh
set -uo pipefail

ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
SELF=deploy/check-standalone.sh

die() {
    printf 'check-standalone: error: %s\n' "$*" >&2
    exit 1
}
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$ROOT is not a git checkout (this check uses git grep)"

patterns=('../shared' '/work/' '/root/' '/home/')

parent=$(dirname -- "$ROOT")
case "$parent" in
/ | /tmp | /var | /var/tmp | /var/lib | /usr | /usr/local | /opt | /srv | /run | /mnt | /etc) ;;
*)
    case " ${patterns[*]} " in
    *" $parent/ "*) ;;
    *) patterns+=("$parent/") ;;
    esac
    ;;
esac

# Reference files that lived beside the repository; citing one by name points outside.
outside_names=(
    messenger-apis.md agent-websocket.md channel-matrix.md feasibility.md
    eralink-functional-description videochat-functional-description video-module-requirements
)
files=$(git ls-files --cached --others --exclude-standard) || die "git ls-files failed"
for name in "${outside_names[@]}"; do
    if ! grep -q -F -- "$name" <<<"$files"; then
        patterns+=("$name")
    fi
done

declare -A seen=()
found=0
for pattern in "${patterns[@]}"; do
    hits=$(git grep --untracked -n -I -F -e "$pattern" -- . \
        ':(exclude,glob)**/Cargo.lock' ":(exclude)$SELF")
    rc=$?
    # git grep: 0 found, 1 nothing found, anything else an error
    [ "$rc" -le 1 ] || die "git grep for \"$pattern\" failed (exit $rc)"
    [ -n "$hits" ] || continue
    while IFS= read -r hit; do
        where=${hit%%:*}
        rest=${hit#*:}
        where="$where:${rest%%:*}"
        text=${rest#*:}
        [ -n "${seen[$where]:-}" ] && continue
        seen[$where]=1
        found=$((found + 1))
        text=$(printf '%s' "$text" | sed -e 's/^[[:space:]]*//')
        if [ "${#text}" -gt 160 ]; then
            text="${text:0:157}..."
        fi
        printf 'check-standalone: %s: refers to "%s", outside the repository:\n    %s\n' \
            "$where" "$pattern" "$text"
    done <<<"$hits"
done

if [ "$found" -gt 0 ]; then
    printf 'check-standalone: %d reference(s) outside the repository. A clone has none of them:\n' "$found"
    printf '  write what is needed into docs/ and cite that instead (the design: docs/design.md,\n'
    printf '  the agent API contract: docs/agent-api.md, the platform notes: docs/platforms.md).\n'
    exit 1
fi
printf 'check-standalone: ok, no reference outside the repository (searched for: %s)\n' "${patterns[*]}"
