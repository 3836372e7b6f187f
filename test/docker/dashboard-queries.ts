/** The PromQL expressions of a Grafana dashboard JSON, with the title of the panel of each. */
export interface PanelQuery {
  readonly panel: string;
  readonly expr: string;
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

export function dashboardQueries(dashboard: unknown): PanelQuery[] {
  const out: PanelQuery[] = [];
  const walk = (panels: Panel[] | undefined): void => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '(untitled)', expr: t.expr });
      walk(p.panels);
    }
  };
  walk((dashboard as { panels?: Panel[] }).panels);
  return out;
}

/** An expression as Prometheus can run it: Grafana's variables replaced (all clusters, 1m/5m). */
export function expandGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__range', '5m')
    .replaceAll('"$scope"', '".*"');
}
