/**
 * A job's webhook deliveries (Job.deliveries): each URL as the API gives it (without its query,
 * fragment or credentials, which may hold the receiver's secret), its state, the requests made, the
 * last answer or why the last request failed, and when it was delivered or is tried next. Written
 * by the server when the job reaches its final state, so a running job has none yet.
 */
import type { WebhookDelivery } from "../../../src/gen/hodei/v1/api_pb.js";
import { ago, isoTime, ms } from "../format";
import { StateBadge } from "../widgets";

export function Deliveries({ deliveries }: { deliveries: WebhookDelivery[] }) {
  if (deliveries.length === 0) return null;
  const now = Date.now();
  return (
    <>
      <h3 id="webhooks-title">Webhooks</h3>
      <table className="table deliveries" aria-labelledby="webhooks-title">
        <thead>
          <tr>
            <th scope="col">url</th>
            <th scope="col">state</th>
            <th scope="col" className="num">requests</th>
            <th scope="col">last answer</th>
            <th scope="col">last error</th>
            <th scope="col">created</th>
            <th scope="col">delivered / next try</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.map((d) => {
            const delivered = ms(d.deliveredAt);
            const next = ms(d.nextAttemptAt);
            return (
              <tr key={d.id} data-delivery={d.id} data-state={d.state}>
                <th scope="row" className="mono small ellipsis" title={`${d.url} · delivery ${d.id}`} data-col="url">
                  {d.url}
                </th>
                <td data-col="state">
                  <StateBadge state={d.state} />
                </td>
                <td className="num" data-col="requests">
                  {d.attempts}
                </td>
                <td data-col="answer">{d.lastStatus ? `HTTP ${d.lastStatus}` : <span className="muted">none</span>}</td>
                <td className="small error-text" data-col="error">
                  {d.lastError}
                </td>
                <td className="small" title={isoTime(ms(d.createdAt))}>
                  {ago(ms(d.createdAt), now)}
                </td>
                <td className="small" data-col="when" title={isoTime(delivered ?? next)}>
                  {delivered !== null ? `delivered ${ago(delivered, now)}` : next !== null && d.state === "pending" ? `next try ${ago(next, now)}` : "—"}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}
