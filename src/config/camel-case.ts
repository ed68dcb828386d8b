/**
 * The config file speaks LiteLLM's snake_case; the code reads camelCase. One rule converts both the type and
 * the value, so a setting is named once, in the schema, and never again in a hand-written mapping.
 */

/** `l1_max_entries` → `l1MaxEntries`, as a type. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/**
 * An object's keys in camelCase. Every key becomes required (its type still admits undefined when the field
 * is optional), so the code reads `replicaCount: number | undefined` as it would from a hand-written type.
 */
export type CamelKeys<T> = { [K in keyof Required<T> & string as CamelCase<K>]: T[K] };

/** `l1_max_entries` → `l1MaxEntries`, as a value: the runtime half of CamelCase. */
export function camelCase(name: string): string {
  return name.replace(/_(.)/g, (_, next: string) => next.toUpperCase());
}

export function camelKeys<T extends object>(value: T): CamelKeys<T> {
  return Object.fromEntries(Object.entries(value).map(([key, field]) => [camelCase(key), field])) as CamelKeys<T>;
}
