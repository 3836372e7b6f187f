/** Every key path of a zod config schema (`proxy.listeners[].max_lag`), for the docs checks. */
import { z } from 'zod';

function unwrap(t: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (t instanceof z.ZodDefault) t = t._def.innerType as z.ZodTypeAny;
    else if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodTypeAny;
    else if (t instanceof z.ZodEffects) t = t.innerType() as z.ZodTypeAny;
    else return t;
  }
}

export function schemaKeys(schema: z.ZodTypeAny, prefix = ''): string[] {
  const t = unwrap(schema);
  if (t instanceof z.ZodObject) {
    return Object.entries(t.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) => {
      const path = prefix ? `${prefix}.${k}` : k;
      const inner = unwrap(v);
      const children = inner instanceof z.ZodObject || inner instanceof z.ZodArray ? schemaKeys(v, path) : [];
      return children.length > 0 ? children : [path];
    });
  }
  if (t instanceof z.ZodArray) {
    const el = unwrap(t.element as z.ZodTypeAny);
    return el instanceof z.ZodObject ? schemaKeys(el, `${prefix}[]`) : [prefix];
  }
  return prefix ? [prefix] : [];
}
