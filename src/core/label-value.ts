/**
 * Kubernetes label values, as the API server validates them (apimachinery IsValidLabelValue):
 * empty, or at most 63 characters of [A-Za-z0-9-_.] that start and end with an alphanumeric.
 * Anything we put into a label (the cluster id above all) is checked with this before any object is
 * created, so a bad value is one clear error at start, never a 422 on every pod. Pure.
 */

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
export const LABEL_VALUE_MAX_LENGTH = 63;

/** The API server's own words for why `value` is not a label value, or null when it is one. */
export function labelValueProblem(value: string): string | null {
  if (value.length > LABEL_VALUE_MAX_LENGTH) return `must be no more than ${LABEL_VALUE_MAX_LENGTH} characters`;
  if (!LABEL_VALUE.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
  }
  return null;
}
