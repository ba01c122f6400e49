#version 330 core
// Gaussian falloff of one splat, premultiplied alpha, blended back to front with
// glBlendFunc(GL_ONE, GL_ONE_MINUS_SRC_ALPHA).

in vec4 v_color;
in vec2 v_pos;
out vec4 frag_color;

void main() {
    float d2 = dot(v_pos, v_pos);
    if (d2 > 9.0) discard;                      // beyond 3 sigma
    float alpha = min(0.99, v_color.a * exp(-0.5 * d2));
    if (alpha < 1.0 / 255.0) discard;
    frag_color = vec4(v_color.rgb * alpha, alpha);
}
