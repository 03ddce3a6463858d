import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addressRefusal, displayedWebhookUrl, webhookUrlProblem } from "./webhook-address.js";

describe("addressRefusal", () => {
  it("refuses every private, loopback, link-local, CGNAT, multicast, unspecified and reserved IPv4 range", () => {
    const refused: [string, RegExp][] = [
      ["0.0.0.0", /unspecified/],
      ["10.0.0.1", /private/],
      ["10.255.255.255", /private/],
      ["100.64.0.1", /CGNAT/],
      ["100.127.255.254", /CGNAT/],
      ["127.0.0.1", /loopback/],
      ["127.255.0.9", /loopback/],
      ["169.254.169.254", /link-local/],
      ["172.16.0.1", /private/],
      ["172.31.255.255", /private/],
      ["192.168.1.1", /private/],
      ["192.0.0.170", /IETF/],
      ["198.18.0.1", /benchmarking/],
      ["224.0.0.1", /multicast/],
      ["239.255.255.250", /multicast/],
      ["255.255.255.255", /reserved/],
    ];
    for (const [address, why] of refused) assert.match(addressRefusal(address) ?? "", why, address);
  });

  it("lets public IPv4 addresses through, up to the edges of the refused ranges", () => {
    for (const address of ["8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "169.253.255.255", "223.255.255.255", "93.184.216.34"]) {
      assert.equal(addressRefusal(address), null, address);
    }
  });

  it("refuses IPv6 loopback, unspecified, link-local, unique-local (the AWS metadata address too), multicast and documentation", () => {
    const refused: [string, RegExp][] = [
      ["::1", /loopback/],
      ["::", /unspecified/],
      ["fe80::1", /link-local/],
      ["fe80::1%eth0", /link-local/],
      ["fc00::1", /unique-local/],
      ["fd00:ec2::254", /unique-local/],
      ["ff02::1", /multicast/],
      ["2001:db8::1", /documentation/],
      ["fec0::1", /site-local/],
    ];
    for (const [address, why] of refused) assert.match(addressRefusal(address) ?? "", why, address);
  });

  it("judges IPv4 inside IPv6 (mapped, NAT64, 6to4, compatible) as that IPv4 address", () => {
    assert.match(addressRefusal("::ffff:127.0.0.1") ?? "", /loopback \(127\.0\.0\.1 as IPv4-mapped IPv6\)/);
    assert.match(addressRefusal("::ffff:7f00:1") ?? "", /loopback/, "the hex form of the same address");
    assert.match(addressRefusal("::ffff:169.254.169.254") ?? "", /link-local/);
    assert.match(addressRefusal("0:0:0:0:0:ffff:10.0.0.1") ?? "", /private/);
    assert.match(addressRefusal("64:ff9b::10.0.0.1") ?? "", /private .*NAT64/);
    assert.match(addressRefusal("2002:a00:1::") ?? "", /private .*6to4/, "6to4 of 10.0.0.1");
    assert.match(addressRefusal("::127.0.0.1") ?? "", /compatible/);
    assert.equal(addressRefusal("::ffff:8.8.8.8"), null);
    assert.equal(addressRefusal("64:ff9b::8.8.8.8"), null);
  });

  it("lets public IPv6 addresses through", () => {
    for (const address of ["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888"]) assert.equal(addressRefusal(address), null, address);
  });

  it("refuses what is not an address", () => {
    assert.match(addressRefusal("example.com") ?? "", /not an IP address/);
    assert.match(addressRefusal("") ?? "", /not an IP address/);
  });
});

describe("webhookUrlProblem", () => {
  it("reads addresses as the URL parser normalises them (decimal, hex, short forms)", () => {
    for (const url of ["http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://[0:0:0:0:0:ffff:127.0.0.1]/", "http://[::ffff:a9fe:a9fe]/"]) {
      assert.match(webhookUrlProblem(url, false) ?? "", /HODEI_WEBHOOK_ALLOW_PRIVATE/, url);
    }
  });

  it("leaves names to the delivery's own check, but for localhost", () => {
    assert.equal(webhookUrlProblem("https://hooks.example.com/x", false), null);
    assert.match(webhookUrlProblem("http://LOCALHOST./", false) ?? "", /loopback/);
  });
});

describe("displayedWebhookUrl", () => {
  it("shows no credentials, query or fragment, and only the origin when asked", () => {
    assert.equal(displayedWebhookUrl("https://user:pw@hooks.example.com/a/b?token=s3cret#x"), "https://hooks.example.com/a/b");
    assert.equal(displayedWebhookUrl("https://hooks.example.com:8443/a/b?token=s3cret", true), "https://hooks.example.com:8443");
  });
});
