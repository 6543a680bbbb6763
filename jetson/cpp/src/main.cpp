// edgefold_infer ENGINE IMAGE [IMAGE...]: raw gray pixels into an edgefold engine, outputs printed. A .raw/.bin
// file is a camera buffer (Bayer mosaic, NV12, YUYV, Mono12 as float32 ...) for an engine built with
// --pixel-format: its bytes go in as they are.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "edgefold/engine.hpp"
#include "edgefold/image.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: edgefold_infer NAME.engine IMAGE.pgm|IMAGE.png|FRAME.raw [...]\n"
                             "  reads NAME.json (the sidecar edgefold build writes) next to the engine;\n"
                             "  FRAME.raw: the camera's buffer for an engine built with --pixel-format\n");
        return 2;
    }
    const std::string engine_path = argv[1];
    const auto dot = engine_path.rfind(".engine");
    const std::string sidecar = (dot == std::string::npos ? engine_path : engine_path.substr(0, dot)) + ".json";
    try {
        edgefold::Engine engine(engine_path, sidecar);
        for (int i = 2; i < argc; ++i) {
            const std::string path = argv[i];
            const bool raw = edgefold::is_raw_buffer(path);
            std::map<std::string, edgefold::Tensor> outputs;
            if (raw) {  // the camera's own buffer, at the size the engine was built for
                const auto size = engine.buffer_size();
                const auto bytes = edgefold::read_bytes(path);
                outputs = engine.infer_raw(bytes.data(), bytes.size(), size.first, size.second);
                std::printf("%s (%s buffer, %dx%d):\n", argv[i], engine.pixel_format().c_str(), size.second,
                            size.first);
            } else {
                const auto img = edgefold::read_gray(path);
                outputs = engine.infer(img.pixels.data(), img.height, img.width);
                std::printf("%s (%dx%d):\n", argv[i], img.width, img.height);
            }
            for (const auto& kv : outputs) {
                const auto& t = kv.second;
                std::string shape;
                for (auto d : t.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
                const bool classifier = t.shape.size() == 2 || (t.shape.size() == 4 && t.shape[2] == 1 && t.shape[3] == 1);
                if (classifier && !t.data.empty()) {
                    std::vector<std::size_t> order(t.data.size());
                    std::iota(order.begin(), order.end(), 0);
                    const std::size_t k = std::min<std::size_t>(5, order.size());
                    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                                      [&](std::size_t a, std::size_t b) { return t.data[a] > t.data[b]; });
                    std::printf("  %s [%s]: top-%zu", kv.first.c_str(), shape.c_str(), k);
                    for (std::size_t j = 0; j < k; ++j) std::printf(" %zu=%.4g", order[j], t.data[order[j]]);
                    std::printf("\n");
                } else {
                    const auto mm = std::minmax_element(t.data.begin(), t.data.end());
                    const double mean = t.data.empty() ? 0.0
                        : std::accumulate(t.data.begin(), t.data.end(), 0.0) / static_cast<double>(t.data.size());
                    std::printf("  %s [%s]: min %.4g max %.4g mean %.4g\n", kv.first.c_str(), shape.c_str(),
                                t.data.empty() ? 0.0 : *mm.first, t.data.empty() ? 0.0 : *mm.second, mean);
                }
            }
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "edgefold_infer: %s\n", e.what());
        return 1;
    }
}
