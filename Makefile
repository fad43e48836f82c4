# The two commands of the README. Both install what they need first (scripts/setup.sh).
.PHONY: demo test setup bench
setup:
	bash scripts/setup.sh
demo: setup
	bash scripts/demo.sh
test: setup
	npm test
bench: setup
	node_modules/.bin/tsx bench/startup.ts
	node_modules/.bin/tsx bench/setup_latency.ts
	node_modules/.bin/tsx bench/dhcp_latency.ts --json bench/results/dhcp.json
	node dist/burrow.cjs bench --json bench/results/latest.json --svg bench/results/latest.svg
