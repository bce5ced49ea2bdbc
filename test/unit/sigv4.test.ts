/**
 * The signer against the examples AWS publishes for S3 (Signature Version 4, "Examples of the
 * signature calculation"): the same request, credentials and time must give the same signature.
 * That it is accepted by a real store is tested against radosgw in test/offsite.
 */
import { describe, expect, test } from "bun:test";
import { EMPTY_SHA256, amzDate, authorization, canonicalQuery, signature, uriEncode, uriEncodePath, type SignRequest } from "../../src/core/offsite/sigv4.ts";

const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST = "examplebucket.s3.amazonaws.com";
const DATE = "20130524T000000Z";

function req(over: Partial<SignRequest>): SignRequest {
  return {
    method: "GET", path: "/", query: [], payloadHash: EMPTY_SHA256, region: "us-east-1", amzDate: DATE,
    headers: { host: HOST, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": DATE },
    ...over,
  };
}

describe("SigV4: AWS's published S3 examples", () => {
  const cases: [string, SignRequest, string][] = [
    ["GET object with a range", req({ path: "/test.txt", headers: { host: HOST, range: "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": DATE } }),
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"],
    ["PUT object", req({
      method: "PUT", path: uriEncodePath("/test$file.text"),
      payloadHash: "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      headers: {
        date: "Fri, 24 May 2013 00:00:00 GMT", host: HOST, "x-amz-date": DATE, "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      },
    }), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"],
    ["GET bucket lifecycle (a bare query name)", req({ query: [["lifecycle", ""]] }), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"],
    ["GET bucket (list objects), query sorted", req({ query: [["prefix", "J"], ["max-keys", "2"]] }), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"],
  ];
  for (const [name, r, want] of cases) {
    test(name, () => {
      expect(signature(r, SECRET)).toBe(want);
      expect(authorization(r, { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: SECRET })).toEndWith(`Signature=${want}`);
    });
  }
  test("a different secret gives a different signature", () => {
    expect(signature(cases[0]![1], `${SECRET}x`)).not.toBe(cases[0]![2]);
  });
});

describe("SigV4: encoding", () => {
  test.each([
    ["a-b_c.d~e", false, "a-b_c.d~e"],
    ["a b", false, "a%20b"],
    ["!'()*", false, "%21%27%28%29%2A"],
    ["a/b", false, "a%2Fb"],
    ["a/b c", true, "a/b%20c"],
    ["é", false, "%C3%A9"],
    ["x+y=z", false, "x%2By%3Dz"],
  ] as const)("%p (keep slash %p) → %p", (s, keep, want) => {
    expect(uriEncode(s, keep)).toBe(want);
  });
  test("query: sorted by name, bare names get =, values encoded", () => {
    expect(canonicalQuery([["uploads", ""], ["prefix", "a/b"], ["list-type", "2"]])).toBe("list-type=2&prefix=a%2Fb&uploads=");
    expect(canonicalQuery([["uploadId", "a/b+c=="], ["partNumber", "2"]])).toBe("partNumber=2&uploadId=a%2Fb%2Bc%3D%3D");
  });
  test("amzDate", () => {
    expect(amzDate(new Date("2013-05-24T00:00:00.123Z"))).toBe("20130524T000000Z");
  });
});
