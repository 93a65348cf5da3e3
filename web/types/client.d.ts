// Types the console's API client derives from the generated OpenAPI declarations (api.d.ts),
// so every call names a path and method the document has, and its body and answer are that
// operation's own.
import type { paths, components } from "./api";

export type Schemas = components["schemas"];
export type Path = keyof paths;
export type HttpMethod = "get" | "post" | "put" | "patch" | "delete";

/** The methods a path has. */
export type MethodOf<P extends Path> = {
  [M in HttpMethod]: NonNullable<paths[P][M]> extends never ? never : M;
}[HttpMethod];

type Op<P extends Path, M extends HttpMethod> = NonNullable<paths[P][M]>;

type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : void;

/** What a successful call answers with (200, 201, or nothing for 204). */
export type Answer<P extends Path, M extends HttpMethod> = Op<P, M> extends { responses: infer R }
  ? R extends { 200: infer A }
    ? JsonOf<A>
    : R extends { 201: infer A }
      ? JsonOf<A>
      : void
  : never;

/** The JSON body an operation takes. */
export type Body<P extends Path, M extends HttpMethod> = Op<P, M> extends {
  requestBody: { content: { "application/json": infer B } };
}
  ? B
  : Op<P, M> extends { requestBody?: { content: { "application/json": infer B } } }
    ? B
    : never;

/** The query parameters an operation takes. */
export type Query<P extends Path, M extends HttpMethod> = Op<P, M> extends { parameters: { query?: infer Q } }
  ? Q
  : never;

/** What the console's element builder accepts as children: nested lists flatten. */
export type Child = string | number | Node | null | undefined | false | Child[];
