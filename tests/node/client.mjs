// A Node client generated at run time from protos/ (@grpc/proto-loader + @grpc/grpc-js).
//
//   GENHUB_TOKEN=... node tests/node/client.mjs HOST:PORT MODEL
//
// Sends the token in GENHUB_TOKEN as `authorization: Bearer <token>` metadata on every call.
// Lists models (first without the token: the server must refuse), generates (unary), generates
// with a stream, sends one invalid request, and prints what it saw as one JSON object. tests/server/test_node_client.py runs it
// against a real `genhub serve`.
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protos = path.resolve(here, "..", "..", "protos");
const [address, model] = process.argv.slice(2);
if (!address || !model) {
  console.error("usage: node tests/node/client.mjs HOST:PORT MODEL");
  process.exit(2);
}

const definition = protoLoader.loadSync(["hub/v1/registry.proto", "hub/v1/generation.proto"], {
  includeDirs: [protos],
  keepCase: true, // field names exactly as in the .proto (num_samples, not numSamples)
  longs: String, // uint64 seeds and int64 ids arrive as decimal strings
  enums: String,
  defaults: true,
  oneofs: true, // a virtual field names the set member of each oneof
});
const hubv1 = grpc.loadPackageDefinition(definition).hub.v1;
const credentials = grpc.credentials.createInsecure();
const registry = new hubv1.RegistryService(address, credentials);
const generation = new hubv1.GenerationService(address, credentials);
const deadline = () => new Date(Date.now() + 60_000);
const token = process.env.GENHUB_TOKEN;
const authorized = () => {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return metadata;
};

const unary = (client, method, request, metadata = authorized()) =>
  new Promise((resolve, reject) =>
    client[method](request, metadata, { deadline: deadline() }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const isPng = (image) => image.content === "png" && image.png.subarray(0, 8).equals(PNG_SIGNATURE);

function streamGenerate(request) {
  return new Promise((resolve, reject) => {
    const seen = { steps: [], previews: 0, result: null };
    const call = generation.StreamGenerate(request, authorized(), { deadline: deadline() });
    call.on("data", (message) => {
      if (message.event === "progress") {
        seen.steps.push(message.progress.step);
        seen.previews += message.progress.previews.length;
      } else {
        seen.result = message.result;
      }
    });
    call.on("error", reject);
    call.on("end", () => resolve(seen));
  });
}

async function main() {
  let anonymous = null;
  try {
    await unary(registry, "ListModels", { page_size: 100 }, new grpc.Metadata());
  } catch (error) {
    anonymous = grpc.status[error.code];
  }
  const listed = await unary(registry, "ListModels", { page_size: 100 });
  const request = { model, num_samples: 2, seed: "5", steps: 3, format: "IMAGE_FORMAT_PNG" };
  const generated = await unary(generation, "Generate", request);
  const streamed = await streamGenerate({ request: { ...request, num_samples: 1 }, preview_every: 1 });
  let invalid = null;
  try {
    await unary(generation, "Generate", { ...request, num_samples: 65 });
  } catch (error) {
    invalid = { code: grpc.status[error.code], details: error.details };
  }
  const result = streamed.result;
  console.log(
    JSON.stringify({
      models: listed.models.map((m) => m.name),
      generate: {
        images: generated.images.length,
        all_png: generated.images.every(isPng),
        model_version: generated.model_version,
        seed: generated.seed,
        generation_id: generated.generation_id,
      },
      stream: {
        steps: streamed.steps,
        previews: streamed.previews,
        result_images: result ? result.images.length : 0,
        result_png: result ? result.images.every(isPng) : false,
      },
      invalid,
      anonymous,
    }),
  );
  registry.close();
  generation.close();
}

main().catch((error) => {
  console.error(`node client failed: ${error.code !== undefined ? grpc.status[error.code] : ""} ${error.message}`);
  process.exit(1);
});
