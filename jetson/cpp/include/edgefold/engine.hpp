// edgefold::Engine - a small RAII wrapper an inspection app can include: loads a TensorRT engine built by
// `edgefold build` and its NAME.json sidecar, allocates device buffers once, copies raw uint8 gray pixels in
// as the input contract says - or, for an engine built with --pixel-format, the camera's own buffer (a Bayer
// mosaic, NV12, YUYV, Mono12 ...) as it is - runs enqueueV3 on its own stream and returns the outputs as floats.
// TensorRT 8.5+ (named tensors: JetPack 5.1, 6.x) and 10.x/11.x; CUDA >= 11.4. No Python, no OpenCV.
#pragma once

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace edgefold {

inline void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

class Logger : public nvinfer1::ILogger {
   public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
    }
};

struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;  // outputs converted to float
};

inline std::size_t element_size(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return 4;
        case nvinfer1::DataType::kHALF: return 2;
        case nvinfer1::DataType::kINT8: return 1;
        case nvinfer1::DataType::kINT32: return 4;
        case nvinfer1::DataType::kBOOL: return 1;
        case nvinfer1::DataType::kUINT8: return 1;
#if NV_TENSORRT_MAJOR >= 10
        case nvinfer1::DataType::kINT64: return 8;
        case nvinfer1::DataType::kBF16: return 2;
#endif
        default: throw std::runtime_error("unsupported TensorRT data type");
    }
}

inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    std::uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal
            int e = -1;
            std::uint32_t m = mant;
            do { ++e; m <<= 1; } while ((m & 0x400u) == 0);
            bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// the newest NAME.json schema this sample reads (sidecar_version; absent = 1). 2: input_contract is always
// complete. Keep in step with edgefold.core.contract.SIDECAR_VERSION.
constexpr int kSidecarVersion = 2;

class Engine {
   public:
    Engine(const std::string& engine_path, const std::string& sidecar_path) {
        std::ifstream side(sidecar_path);
        if (!side) throw std::runtime_error(sidecar_path + ": sidecar missing (copy NAME.json with NAME.engine)");
        const auto sidecar = nlohmann::json::parse(side);
        const int version = sidecar.value("sidecar_version", 1);
        if (version > kSidecarVersion)
            throw std::runtime_error(sidecar_path + ": sidecar schema version " + std::to_string(version) +
                                     " is newer than this app reads (" + std::to_string(kSidecarVersion) +
                                     "); rebuild the app from the edgefold that built the engine");
        const auto& c = sidecar.at("input_contract");
        input_name_ = c.at("name").get<std::string>();
        input_dtype_ = c.at("dtype").get<std::string>();
        layout_ = c.at("layout").get<std::string>();
        channels_ = c.at("channels").get<int>();
        pixel_format_ = c.value("channel_order", std::string());
        for (const auto& d : c.value("shape", nlohmann::json::array()))
            shape_.push_back(d.is_number_integer() ? d.get<int64_t>() : -1);  // -1: a dynamic dimension
        const auto built = sidecar.value("engine", nlohmann::json::object()).value("tensorrt", std::string());
        const std::string here = std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + ".";
        if (!built.empty() && built.rfind(here, 0) != 0)
            std::cerr << "edgefold: warning: engine built with TensorRT " << built << ", this build uses " << here
                      << "x - rebuild the engine on this device if loading fails\n";

        std::ifstream f(engine_path, std::ios::binary);
        if (!f) throw std::runtime_error(engine_path + ": cannot open");
        std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) throw std::runtime_error("createInferRuntime failed");
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_) throw std::runtime_error(engine_path + ": TensorRT cannot load it (built for another version or GPU?)");
        context_.reset(engine_->createExecutionContext());
        if (!context_) throw std::runtime_error("createExecutionContext failed");
        cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
        for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
            const char* name = engine_->getIOTensorName(i);
            if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) outputs_.emplace_back(name);
        }
    }

    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    ~Engine() {
        for (auto& kv : device_) cudaFree(kv.second.first);
        if (stream_) cudaStreamDestroy(stream_);
    }

    int channels() const { return channels_; }

    // The GenICam name of the camera format the engine reads (BayerRG8, NV12, YUV422_8, Mono12 ...; an engine
    // built with --pixel-format), else the channel order of a gray/RGB contract.
    const std::string& pixel_format() const { return pixel_format_; }

    // The rows x columns of the camera buffer a static engine takes (NV12: 3H/2 x W; YUYV: H x 2W; Bayer: H x W).
    std::pair<int, int> buffer_size() const {
        if (shape_.size() != 4 || shape_[2] < 0 || shape_[3] < 0)
            throw std::runtime_error("the engine's input size is dynamic: give the frame's rows and columns");
        return {static_cast<int>(shape_[2]), static_cast<int>(shape_[3])};
    }

    // One gray uint8 frame (height x width, row-major) -> outputs by name.
    std::map<std::string, Tensor> infer(const std::uint8_t* pixels, int height, int width) {
        if (channels_ != 1) throw std::runtime_error("this sample feeds gray frames; the engine takes " +
                                                     std::to_string(channels_) + " channels");
        const bool nhwc = layout_ == "NHWC";
        const bool nhw = layout_ == "NHW";  // N x H x W input: the network inserts the channel axis
        const int64_t shape[4] = {1, nhwc || nhw ? height : 1, nhwc || nhw ? width : height, nhwc ? 1 : width};
        const std::size_t n = static_cast<std::size_t>(height) * width;
        if (input_dtype_ == "uint8") return run(shape, nhw ? 3 : 4, pixels, n);
        staging_.resize(n);  // a float32 contract: convert on the host
        for (std::size_t i = 0; i < n; ++i) staging_[i] = static_cast<float>(pixels[i]);
        return run(shape, nhw ? 3 : 4, staging_.data(), n * 4);
    }

    // A camera buffer exactly as the engine's input takes it (rows x cols elements of the contract's dtype:
    // uint8 for 8-bit formats, float32 for Mono10-16/Bayer10-16, which TensorRT has no uint16 type for).
    std::map<std::string, Tensor> infer_raw(const void* data, std::size_t bytes, int rows, int cols) {
        const std::size_t element = input_dtype_ == "uint8" ? 1 : 4;
        const std::size_t want = static_cast<std::size_t>(rows) * cols * element;
        if (bytes != want)
            throw std::runtime_error("a " + std::to_string(cols) + "x" + std::to_string(rows) + " " + pixel_format_ +
                                     " buffer is " + std::to_string(want) + " bytes, got " + std::to_string(bytes));
        const int64_t shape[4] = {1, 1, rows, cols};
        return run(shape, 4, data, bytes);
    }

   private:
    std::map<std::string, Tensor> run(const int64_t* shape, int rank, const void* data, std::size_t bytes) {
        nvinfer1::Dims dims{};
        dims.nbDims = rank;
        for (int k = 0; k < rank; ++k) dims.d[k] = static_cast<std::remove_reference_t<decltype(dims.d[0])>>(shape[k]);
        if (!context_->setInputShape(input_name_.c_str(), dims))
            throw std::runtime_error("frame size is outside the engine's optimization profile");
        void* in = buffer(input_name_, bytes);
        cuda_check(cudaMemcpyAsync(in, data, bytes, cudaMemcpyHostToDevice, stream_), "copy input");
        context_->setTensorAddress(input_name_.c_str(), in);
        std::map<std::string, std::vector<std::uint8_t>> host;
        for (const auto& name : outputs_) {
            const auto d = context_->getTensorShape(name.c_str());
            std::size_t count = 1;
            for (int32_t k = 0; k < d.nbDims; ++k) count *= static_cast<std::size_t>(d.d[k]);
            const std::size_t bytes = count * element_size(engine_->getTensorDataType(name.c_str()));
            context_->setTensorAddress(name.c_str(), buffer(name, bytes));
            host[name].resize(bytes);
        }
        if (!context_->enqueueV3(stream_)) throw std::runtime_error("enqueueV3 failed");
        for (auto& kv : host)
            cuda_check(cudaMemcpyAsync(kv.second.data(), device_.at(kv.first).first, kv.second.size(),
                                       cudaMemcpyDeviceToHost, stream_), "copy output");
        cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        std::map<std::string, Tensor> result;
        for (const auto& name : outputs_) {
            Tensor t;
            const auto d = context_->getTensorShape(name.c_str());
            for (int32_t k = 0; k < d.nbDims; ++k) t.shape.push_back(d.d[k]);
            const auto type = engine_->getTensorDataType(name.c_str());
            const auto& raw = host[name];
            const std::size_t count = raw.size() / element_size(type);
            t.data.resize(count);
            for (std::size_t i = 0; i < count; ++i) {
                if (type == nvinfer1::DataType::kFLOAT) {
                    std::memcpy(&t.data[i], raw.data() + 4 * i, 4);
                } else if (type == nvinfer1::DataType::kHALF) {
                    std::uint16_t h;
                    std::memcpy(&h, raw.data() + 2 * i, 2);
                    t.data[i] = half_to_float(h);
                } else if (type == nvinfer1::DataType::kINT32) {
                    std::int32_t v;
                    std::memcpy(&v, raw.data() + 4 * i, 4);
                    t.data[i] = static_cast<float>(v);
                } else {
                    t.data[i] = static_cast<float>(raw[i]);
                }
            }
            result.emplace(name, std::move(t));
        }
        return result;
    }

    void* buffer(const std::string& name, std::size_t bytes) {  // allocate once, grow when needed
        auto it = device_.find(name);
        if (it != device_.end() && it->second.second >= bytes) return it->second.first;
        if (it != device_.end()) cudaFree(it->second.first);
        void* ptr = nullptr;
        cuda_check(cudaMalloc(&ptr, bytes > 0 ? bytes : 1), "cudaMalloc");
        device_[name] = {ptr, bytes};
        return ptr;
    }

    Logger logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    cudaStream_t stream_ = nullptr;
    std::string input_name_, input_dtype_, layout_, pixel_format_;
    int channels_ = 1;
    std::vector<int64_t> shape_;
    std::vector<std::string> outputs_;
    std::map<std::string, std::pair<void*, std::size_t>> device_;
    std::vector<float> staging_;
};

}  // namespace edgefold
