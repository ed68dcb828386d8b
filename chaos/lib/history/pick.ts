/** One of `xs` at random (undefined when there is none). */
export const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
