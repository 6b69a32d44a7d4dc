// Parses LogQL and TraceQL queries with the grammars Grafana's own query
// editors use (@grafana/lezer-logql, @grafana/lezer-traceql, Apache-2.0):
// `node check.mjs --logql FILE --traceql FILE`, each file one query per
// line. Every query that does not parse is printed with where the parser
// gave up; the exit status is then 1.
//
// Lezer parsers recover from errors rather than stop, so a query parses
// when its tree holds no error node.
import { readFileSync } from "node:fs";
import { parser as logql } from "@grafana/lezer-logql";
import { parser as traceql } from "@grafana/lezer-traceql";

const languages = { "--logql": ["LogQL", logql], "--traceql": ["TraceQL", traceql] };

/** Where the first error node of `query`'s tree starts, or -1. */
function firstError(parser, query) {
  let at = -1;
  parser.parse(query).iterate({
    enter(node) {
      if (at < 0 && node.type.isError) at = node.from;
      return at < 0;
    },
  });
  return at;
}

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0 || args.some((a, i) => i % 2 === 0 && !languages[a])) {
  console.error("usage: check.mjs [--logql FILE] [--traceql FILE]");
  process.exit(2);
}
let failed = false;
for (let i = 0; i < args.length; i += 2) {
  const [name, parser] = languages[args[i]];
  const path = args[i + 1];
  let checked = 0;
  let bad = 0;
  readFileSync(path, "utf8").split("\n").forEach((query, index) => {
    if (query.trim() === "") return;
    checked++;
    const at = firstError(parser, query);
    if (at >= 0) {
      failed = true;
      bad++;
      console.log(`${path}:${index + 1}: ${name} does not parse at column ${at + 1}:\n  ${query}\n  ${" ".repeat(at)}^`);
    }
  });
  console.log(
    bad === 0
      ? `querycheck: ${checked} ${name} queries parse`
      : `querycheck: ${bad} of ${checked} ${name} queries do not parse`,
  );
}
process.exit(failed ? 1 : 0);
