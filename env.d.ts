declare module '*.wgsl?raw' {
  const source: string;
  export default source;
}

/** Python and YAML sources shipped as text (the run bundle's continue.py and accelerate configurations). */
declare module '*.py?raw' {
  const source: string;
  export default source;
}
declare module '*.yaml?raw' {
  const source: string;
  export default source;
}
