#version 330 core
// Gaussian splat vertex shader: one instanced screen-space quad per gaussian.
//
// The 3D covariance Sigma (world frame) is projected to a 2D covariance in pixels with the
// EWA Jacobian (Zwicker et al. 2002), as gsplat, the INRIA rasterizer and the WebGL viewers
// (antimatter15/splat, SuperSplat) do: cov2d = J W Sigma W^T J^T + 0.3 I.
// Camera frame: OpenCV (x right, y down, z forward), u_view is world-to-camera.
// Per-gaussian data lives in an RGBA32F texture, 4 texels per gaussian, 1024 gaussians per
// row: t0 = (mean xyz, opacity), t1 = (cov xx, xy, xz, yy), t2 = (cov yz, zz, -, -),
// t3 = (rgb, -). The instanced attribute a_index gives the gaussian drawn by this instance,
// so a back-to-front sort only re-uploads the index buffer.

layout(location = 0) in vec2 a_corner;   // quad corner in [-1, 1]^2
layout(location = 1) in uint a_index;    // per instance: gaussian index (sorted order)

uniform sampler2D u_data;
uniform mat4 u_view;       // world-to-camera (OpenCV)
uniform vec2 u_focal;      // fx, fy in pixels
uniform vec2 u_viewport;   // width, height in pixels
uniform float u_near;      // near plane, world units
uniform bool u_antialiased; // scale opacity by the 2D filter's compensation (gsplat)

out vec4 v_color;          // rgb, opacity
out vec2 v_pos;            // position in the quad, in standard deviations

const float K_SIGMA = 3.0;

void cull() {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // outside the clip volume
    v_color = vec4(0.0);
    v_pos = vec2(0.0);
}

void main() {
    int i = int(a_index);
    ivec2 base = ivec2((i % 1024) * 4, i / 1024);
    vec4 t0 = texelFetch(u_data, base, 0);
    vec4 t1 = texelFetch(u_data, base + ivec2(1, 0), 0);
    vec4 t2 = texelFetch(u_data, base + ivec2(2, 0), 0);
    vec4 t3 = texelFetch(u_data, base + ivec2(3, 0), 0);

    vec4 cam = u_view * vec4(t0.xyz, 1.0);
    float z = cam.z;
    if (z < u_near) { cull(); return; }

    mat3 Sigma = mat3(t1.x, t1.y, t1.z,
                      t1.y, t1.w, t2.x,
                      t1.z, t2.x, t2.y);
    // Clamp the point to 1.3x the field of view for the Jacobian (gsplat / INRIA).
    vec2 tlim = 1.3 * 0.5 * u_viewport / u_focal;
    vec2 txy = clamp(cam.xy / z, -tlim, tlim) * z;
    mat3 J = mat3(u_focal.x / z, 0.0, 0.0,
                  0.0, u_focal.y / z, 0.0,
                  -u_focal.x * txy.x / (z * z), -u_focal.y * txy.y / (z * z), 0.0);
    mat3 M = J * mat3(u_view);
    mat3 C = M * Sigma * transpose(M);

    float a = C[0][0] + 0.3;
    float b = C[0][1];
    float c = C[1][1] + 0.3;
    float opacity = t0.w;
    if (u_antialiased) {
        float det_blur = a * c - b * b;
        float det = (a - 0.3) * (c - 0.3) - b * b;
        opacity *= sqrt(max(det / max(det_blur, 1e-12), 0.0));
    }
    float mid = 0.5 * (a + c);
    float r = length(vec2(0.5 * (a - c), b));
    float l1 = mid + r;
    float l2 = max(mid - r, 0.1);
    vec2 axis = abs(b) < 1e-9 ? (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0))
                              : normalize(vec2(b, l1 - a));
    float s1 = min(K_SIGMA * sqrt(l1), 4096.0);
    float s2 = min(K_SIGMA * sqrt(l2), 4096.0);

    vec2 center = u_focal * cam.xy / z;   // pixels from the image centre, y down
    if (any(greaterThan(abs(center) - s1, 0.5 * u_viewport))) { cull(); return; }

    vec2 p = center + a_corner.x * s1 * axis + a_corner.y * s2 * vec2(-axis.y, axis.x);
    gl_Position = vec4(p.x / (0.5 * u_viewport.x), -p.y / (0.5 * u_viewport.y), 0.0, 1.0);
    v_pos = a_corner * K_SIGMA;
    v_color = vec4(t3.rgb, opacity);
}
