#!/usr/bin/env bash
# deploy/build-packages.sh - build the tcpwrapd .deb and .rpm from one nfpm
# config (deploy/nfpm.yaml).
#
#   deploy/build-packages.sh [-o OUTDIR] [--deb] [--rpm]
#
# Builds cmd/tcpwrapd, cmd/loginctl (CGO_ENABLED=0, PIE) and cmd/loginsvc
# (CGO_ENABLED=0, not PIE, see below), -trimpath, with the version from `git
# describe --tags --always --dirty` stamped into pkg/version, renders the man
# pages from deploy/man/*.md with go-md2man, stages the shell completions,
# and runs nfpm. nfpm and go-md2man are pinned in deploy/tools/go.mod, a
# module of its own, so the main go.mod does not carry them.
#
# OUTDIR defaults to deploy/dist (git-ignored). Without --deb/--rpm both
# are built. GOARCH selects the target (default: the host's).
# SOURCE_DATE_EPOCH defaults to the commit time, so two builds of one
# commit give the same files. TCPWRAPD_MAINTAINER overrides the maintainer.
#
# Prints the package paths, one per line, on stdout; everything else goes
# to stderr.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

out=deploy/dist
formats=()
while [ $# -gt 0 ]; do
    case $1 in
    -o) out=$2; shift 2 ;;
    --deb) formats+=(deb); shift ;;
    --rpm) formats+=(rpm); shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-packages.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm)
mkdir -p "$out"

log() { printf 'build-packages: %s\n' "$*" >&2; }

# --- versions -----------------------------------------------------------
describe=$(git describe --tags --always --dirty)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

# pkg_version turns git describe output into a version dpkg and rpm both
# order correctly: v1.2.3 -> 1.2.3, v1.2.3-rc1 -> 1.2.3~rc1,
# v1.2.3-4-gabc1234 -> 1.2.3+git4.gabc1234, no tag at all ->
# 0~git<commit time>.<hash>; "-dirty" becomes "+dirty".
pkg_version() {
    local d=$1 dirty="" tag="" n="" hash="" v
    case $d in *-dirty) dirty=+dirty; d=${d%-dirty} ;; esac
    if git describe --tags --abbrev=0 >/dev/null 2>&1; then
        if [[ $d =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
            tag=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]} hash=${BASH_REMATCH[3]}
        else
            tag=$d
        fi
        tag=${tag#v}
        tag=${tag//-/\~}
    fi
    if [[ $tag =~ ^[0-9][0-9A-Za-z.+~]*$ ]]; then
        v=$tag
        [ -z "$n" ] || v+="+git$n.g$hash"
    else
        v="0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).$(git rev-parse --short HEAD)"
    fi
    printf '%s%s\n' "$v" "$dirty"
}
export TCPWRAPD_VERSION
TCPWRAPD_VERSION=$(pkg_version "$describe")
export TCPWRAPD_MAINTAINER=${TCPWRAPD_MAINTAINER:-tcpwrapd developers <dev@tcpwrapd.invalid>}
host_goarch=$(go env GOARCH)
export GOARCH=${GOARCH:-$host_goarch}
log "version $describe (package $TCPWRAPD_VERSION-1, $GOARCH)"

stage=$(mktemp -d "${TMPDIR:-/tmp}/tcpwrapd-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
export TCPWRAPD_STAGE=$stage
mkdir -p "$stage/bin" "$stage/man" "$stage/completions" "$stage/doc" "$stage/tools"

# --- tools (host architecture, pinned in deploy/tools/go.mod) -------------
log "building nfpm and go-md2man"
GOARCH=$host_goarch CGO_ENABLED=0 go -C deploy/tools build -trimpath -o "$stage/tools/" \
    github.com/goreleaser/nfpm/v2/cmd/nfpm github.com/cpuguy83/go-md2man/v2

# --- binaries ------------------------------------------------------------
ldflags="-s -w -X github.com/tcpwrapd/tcpwrapd/pkg/version.Version=$describe"
for cmd in tcpwrapd loginctl loginsvc; do
    flags=$ldflags
    # tcpwrapd's assembly entry point refuses a too small RLIMIT_AS
    # (Dovecot's vsz_limit) with a clear message before the Go runtime
    # would crash on it; it exists for linux/amd64 only.
    if [ "$cmd" = tcpwrapd ] && [ "$GOARCH" = amd64 ] && grep -qs 'vszEntry' cmd/tcpwrapd/entry_linux_amd64.s; then
        flags+=" -E=main.vszEntry"
    fi
    # PIE: the binaries get ASLR, and lintian sees Go's static-pie output
    # as the Go binary it is rather than a "statically-linked-binary".
    # Except loginsvc: it is also every login process, exec'd once per
    # client in high-security mode, and a PIE login process has ld.so
    # relocate ~29,000 pointers of its read-only data at every start: 0.65
    # MB of private pages per process (0.85 MB instead of 1.51 MB PSS per
    # greeting process) and a third of its page faults (docs/loginsvc.md,
    # "Memory"). It is a plain static executable (lintian override).
    mode=-buildmode=pie
    [ "$cmd" = loginsvc ] && mode=-buildmode=exe
    log "go build $mode ./cmd/$cmd"
    CGO_ENABLED=0 GOOS=linux go build "$mode" -trimpath -buildvcs=false -ldflags="$flags" -o "$stage/bin/$cmd" "./cmd/$cmd"
done

# Every binary should print the stamped version; say so if one does not
# (.ci/package-test fails on it).
if [ "$GOARCH" = "$host_goarch" ]; then
    for cmd in tcpwrapd loginctl loginsvc; do
        got=$("$stage/bin/$cmd" --version 2>&1 </dev/null || true)
        case $got in
        *"$describe"*) ;;
        *) log "WARNING: '$cmd --version' does not print $describe: $(printf '%s' "$got" | head -n1)" ;;
        esac
    done
fi

# --- man pages -----------------------------------------------------------
# From deploy/man/PAGE.8.md (they add what admins need beyond the flags:
# systemd, files, logs, the tcpwrapctl name). Without a markdown source, the
# binary's hidden `generate man` renders the page from its command
# definitions (pkg/clidoc).
date_str=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%B %Y')
for page in tcpwrapd tcpwrapctl loginsvc; do
    roff=$stage/man/$page.8
    bin=$page
    [ "$page" = tcpwrapctl ] && bin=loginctl
    if [ -f "deploy/man/$page.8.md" ]; then
        sed -e "s/@VERSION@/$describe/g" -e "s/@DATE@/$date_str/g" "deploy/man/$page.8.md" |
            "$stage/tools/go-md2man" >"$roff"
    elif [ "$GOARCH" = "$host_goarch" ] && "$stage/bin/$bin" generate man >"$roff" 2>/dev/null &&
        grep -q '^\.TH' "$roff"; then
        log "man: $page.8 from '$bin generate man'"
        sed -i -e 's/_loginctl\b/_tcpwrapctl/g' -e 's/\bloginctl\b/tcpwrapctl/g' "$roff"
    else
        log "no man page source for $page"
        exit 1
    fi
    gzip -9n "$roff"
done

# --- completions ---------------------------------------------------------
# Generated from loginctl's command definitions when it has the hidden
# `generate` command, else the dynamic scripts in deploy/completions.
for shell in bash zsh fish; do
    case $shell in
    bash) file=tcpwrapctl.bash ;;
    zsh) file=_tcpwrapctl ;;
    fish) file=tcpwrapctl.fish ;;
    esac
    if [ "$GOARCH" = "$host_goarch" ] &&
        "$stage/bin/loginctl" generate "$shell" >"$stage/completions/$file" 2>/dev/null &&
        [ -s "$stage/completions/$file" ]; then
        log "completion: $shell from 'loginctl generate $shell' (pkg/clidoc)"
        # generated for "loginctl"; the installed name is tcpwrapctl
        sed -i -e 's/_loginctl\b/_tcpwrapctl/g' -e 's/\bloginctl\b/tcpwrapctl/g' "$stage/completions/$file"
    else
        cp "deploy/completions/$file" "$stage/completions/$file"
    fi
done

# --- Debian changelog (lintian wants one in every non-native package) ----
{
    printf 'tcpwrapd (%s-1) unstable; urgency=medium\n\n' "$TCPWRAPD_VERSION"
    printf '  * Built from git %s (%s).\n\n' "$describe" "$(git rev-parse HEAD)"
    printf ' -- %s  %s\n' "$TCPWRAPD_MAINTAINER" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/doc/changelog.Debian.gz"

# --- nfpm ----------------------------------------------------------------
config=$stage/nfpm.yaml
cp deploy/nfpm.yaml "$config"
for format in "${formats[@]}"; do
    "$stage/tools/nfpm" package --config "$config" --packager "$format" --target "$out/" >&2
done

# --- result --------------------------------------------------------------
deb_arch=$GOARCH
rpm_arch=$GOARCH
case $GOARCH in amd64) rpm_arch=x86_64 ;; arm64) rpm_arch=aarch64 ;; 386) deb_arch=i386 rpm_arch=i386 ;; esac
for format in "${formats[@]}"; do
    case $format in
    deb) f=$out/tcpwrapd_${TCPWRAPD_VERSION}-1_${deb_arch}.deb ;;
    rpm) f=$out/tcpwrapd-${TCPWRAPD_VERSION}-1.${rpm_arch}.rpm ;;
    esac
    [ -f "$f" ] || { log "expected $f, not found"; ls -l "$out" >&2; exit 1; }
    log "$(du -k "$f" | cut -f1) KiB $(sha256sum "$f" | cut -c1-16)… $f"
    printf '%s\n' "$f"
done
