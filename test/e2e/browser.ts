/**
 * Headless Chromium for the dashboard's tests: Debian's /usr/bin/chromium (HODEI_CHROMIUM to use
 * another), driven by playwright-core, which downloads no browser. Without one the tests skip,
 * saying why, unless HODEI_REQUIRE_BROWSER=1 (CI), where a missing browser fails them.
 */
import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = process.env.HODEI_CHROMIUM ?? "/usr/bin/chromium";

/** Why the browser tests cannot run here, or "" when they can. Throws when a browser is required. */
export function browserMissing(): string {
  if (existsSync(CHROMIUM)) return "";
  const why = `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env.HODEI_REQUIRE_BROWSER === "1") throw new Error(`HODEI_REQUIRE_BROWSER=1 but ${why}`);
  return why;
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}

/** Signs in on whatever page is open: the one password field, then Enter. */
export async function signIn(page: Page, key: string): Promise<void> {
  const field = page.locator('input[type="password"]');
  await field.fill(key);
  await field.press("Enter");
  await page.locator("nav.top").waitFor({ timeout: 10_000 });
}
